#!/usr/bin/python3
"""Address plan of the test network, for tests/net/testnet.sh.

  netplan.py addresses ZONE EXTRA...   every server address (zone values in
                                       the documentation ranges, plus EXTRA)
  netplan.py san ZONE EXTRA...         subjectAltName entries for the good
                                       server certificate
  netplan.py routes VETH ZONE ADDR...  what the host namespace must route
                                       into the test namespace: our own
                                       addresses only (as /32, /128)

`routes` refuses (exit 1, with the reason) when one of our addresses is
already an address of the host or the gateway of one of its routes: the
test network must never shadow anything real.
"""

import ipaddress
import json
import subprocess
import sys

DOC_PREFIXES = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"]
DOC_NETS = [ipaddress.ip_network(p) for p in DOC_PREFIXES]
BAD_NAMES = ("expired.example.test", "selfsigned.example.test", "wrongname.example.test")


def zone_records(path):
    out = []
    with open(path, encoding="ascii") as f:
        for line in f:
            parts = line.split("#", 1)[0].split()
            if len(parts) == 3:
                out.append((parts[0].lower(), parts[1], ipaddress.ip_address(parts[2])))
    return out


def server_addresses(zone, extra):
    out = []
    for _, _, addr in zone_records(zone):
        if any(addr in n for n in DOC_NETS) and addr not in out:
            out.append(addr)
    for a in extra:
        a = ipaddress.ip_address(a)
        if a not in out:
            out.append(a)
    return out


def cmd_addresses(zone, *extra):
    for a in server_addresses(zone, extra):
        print(a)


def cmd_san(zone, *extra):
    names = []
    for name, _, _ in zone_records(zone):
        if name not in BAD_NAMES and name not in names:
            names.append(name)
    entries = ["DNS:" + n for n in names]
    bad = {a for n, _, a in zone_records(zone) if n in BAD_NAMES}
    entries += ["IP:%s" % a for a in server_addresses(zone, extra) if a not in bad]
    print(",".join(entries))


def ip_json(*args):
    return json.loads(subprocess.run(["ip", "-j"] + list(args), check=True,
                                     capture_output=True, text=True).stdout or "[]")


def cmd_routes(veth, zone, *extra):
    ours = server_addresses(zone, extra)
    local = set()
    for link in ip_json("addr", "show"):
        if link.get("ifname") == veth:
            continue
        for a in link.get("addr_info", []):
            local.add(ipaddress.ip_address(a["local"].split("%")[0]))
    used, gateways = [], set()
    for fam in ("-4", "-6"):
        for r in ip_json(fam, "route", "show", "table", "all"):
            if r.get("dev") == veth:
                continue
            if r.get("gateway"):
                gateways.add(ipaddress.ip_address(r["gateway"].split("%")[0]))
            dst = r.get("dst", "default")
            if dst == "default" or r.get("type") in ("multicast",):
                continue
            used.append(ipaddress.ip_network(dst, strict=False))
    clash = [a for a in ours if a in local or a in gateways]
    if clash:
        sys.exit("test addresses already in use on this host: %s" %
                 ", ".join(map(str, clash)))
    # Only our own addresses, one /32 or /128 each: a whole documentation
    # prefix could also hold an address the machine really uses (seen: the
    # package mirror), and routing it into the namespace would cut that off.
    del used
    for a in ours:
        print(ipaddress.ip_network(a))


def main():
    cmds = {"addresses": cmd_addresses, "san": cmd_san, "routes": cmd_routes}
    if len(sys.argv) < 3 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    main()
