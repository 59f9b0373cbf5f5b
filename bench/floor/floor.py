#!/usr/bin/env python3
"""Boot-time floor: a bare QEMU command line to agent-ready.

    bench/floor/floor.py --image DIR --runs N [--json]

For each run: make a fresh qcow2 overlay over DIR/rootfs.img, start QEMU with
the image's kernel, initrd and command line (from DIR/manifest), the
virtio-serial port org.libsandbox.agent backed by a UNIX socket (QEMU is the
server), connect to that socket and time from starting QEMU until the first
complete HELLO frame (type 0x01, stream 0, doc/protocol.md) has arrived.
Then kill QEMU and delete the overlay.

This is the floor that `sandbox_create` is compared with: same kernel,
initramfs and root image, nothing but QEMU itself in between.

Output (--json): {"name": "floor_boot_to_agent_ready", "runs": N,
"p50_ms": ..., "p95_ms": ..., "samples_ms": [...], "accel": "tcg"|"kvm"}.
p50 is the median; p95 is the nearest-rank 95th percentile.

Python 3 standard library only.
"""

import argparse
import json
import math
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

FRAME_HEADER = struct.Struct("<IBBHI")  # len, type, flags, reserved, stream
MAX_PAYLOAD = 65536
T_HELLO = 0x01
PORT_NAME = "org.libsandbox.agent"
QBOOT = "/usr/share/qemu/qboot.rom"


class BenchError(Exception):
    pass


def log(msg):
    print("[floor] " + msg, file=sys.stderr, flush=True)


def read_manifest(image_dir):
    path = os.path.join(image_dir, "manifest")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise BenchError("cannot read %s: %s (build it with guest/image/build.sh)" % (path, e))
    man = {}
    for line in lines:
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        man[k] = v
    if man.get("format") != "1":
        raise BenchError("%s: unsupported manifest format %r" % (path, man.get("format")))
    for key in ("kernel", "initrd", "rootfs", "cmdline"):
        if not man.get(key):
            raise BenchError("%s: no %s=" % (path, key))
    files = {}
    for key in ("kernel", "initrd", "rootfs"):
        fpath = os.path.join(image_dir, man[key])
        try:
            size = os.path.getsize(fpath)
        except OSError as e:
            raise BenchError("image file missing: %s" % e)
        want = man.get(key + "_size")
        if want is not None and str(size) != want:
            raise BenchError("%s: size %d, manifest says %s (corrupt or partial image)" % (fpath, size, want))
        files[key] = fpath
    with open(files["kernel"], "rb") as f:
        if f.read(4) != b"\x7fELF":
            raise BenchError("%s is not an ELF kernel" % files["kernel"])
    with open(files["rootfs"], "rb") as f:
        f.seek(1080)
        if f.read(2) != b"\x53\xef":
            raise BenchError("%s is not an ext4 image" % files["rootfs"])
    return man, files


def kvm_usable():
    """KVM only where it can boot a normal guest: /dev/kvm backed by
    kvm_intel or kvm_amd (PVM's kvm_pvm cannot, see PLATFORM.md)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    return os.path.isdir("/sys/module/kvm_intel") or os.path.isdir("/sys/module/kvm_amd")


def qemu_argv(args, files, cmdline, overlay, sock, accel):
    argv = [args.qemu, "-M", "q35"]
    if accel == "kvm":
        argv += ["-accel", "kvm", "-cpu", "host"]
    else:
        argv += ["-accel", "tcg", "-cpu", "Nehalem"]  # as lib/domain_xml.c
    argv += ["-m", str(args.memory), "-smp", "1",
             "-nodefaults", "-no-user-config", "-nographic", "-no-reboot"]
    if args.bios:
        argv += ["-bios", args.bios]
    argv += [
        "-kernel", files["kernel"],
        "-initrd", files["initrd"],
        "-append", cmdline,
        "-drive", "file=%s,if=virtio,format=qcow2" % overlay,
        "-serial", "stdio",
        "-device", "virtio-serial-pci",
        "-chardev", "socket,id=ch0,path=%s,server=on,wait=off" % sock,
        "-device", "virtserialport,chardev=ch0,name=%s" % PORT_NAME,
    ]
    return argv


def recv_exact(conn, n, deadline):
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError("timed out waiting for HELLO")
        conn.settimeout(left)
        try:
            chunk = conn.recv(n - len(buf))
        except socket.timeout:
            raise BenchError("timed out waiting for HELLO")
        if not chunk:
            raise BenchError("agent channel closed before HELLO")
        buf += chunk
    return bytes(buf)


def wait_hello(conn, deadline):
    """Reads frames until a complete HELLO on stream 0. Returns its payload."""
    for _ in range(64):
        hdr = recv_exact(conn, FRAME_HEADER.size, deadline)
        length, ftype, flags, reserved, stream = FRAME_HEADER.unpack(hdr)
        if length > MAX_PAYLOAD or flags != 0 or reserved != 0:
            raise BenchError("malformed frame header from the agent: %s" % hdr.hex())
        payload = recv_exact(conn, length, deadline) if length else b""
        if ftype == T_HELLO and stream == 0:
            return payload
    raise BenchError("no HELLO among the agent's first 64 frames")


def describe_hello(payload):
    if len(payload) < 16:
        return "short HELLO payload (%d bytes)" % len(payload)
    version, _, max_payload, window, slen = struct.unpack_from("<HHIII", payload)
    agent = payload[16:16 + slen].decode("utf-8", "replace")
    return "protocol %d, agent %r, max payload %d, window %d" % (version, agent, max_payload, window)


def console_tail(path, n=15):
    try:
        with open(path, "rb") as f:
            data = f.read()[-4000:]
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()[-n:]
    return "\n".join("    | " + line for line in lines)


def stop(proc):
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def one_run(args, man, files, accel, verbose):
    tmp = tempfile.mkdtemp(prefix="floor.")
    proc = None
    console = os.path.join(tmp, "console.log")
    try:
        overlay = os.path.join(tmp, "overlay.qcow2")
        sock = os.path.join(tmp, "agent.sock")
        subprocess.run([args.qemu_img, "create", "-q", "-f", "qcow2", "-F", "raw",
                        "-b", os.path.abspath(files["rootfs"]), overlay], check=True)
        argv = qemu_argv(args, files, man["cmdline"], overlay, sock, accel)
        with open(console, "wb") as out:
            t0 = time.monotonic()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        deadline = t0 + args.timeout
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            while True:
                try:
                    conn.connect(sock)
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    if proc.poll() is not None:
                        raise BenchError("qemu exited with status %s before the agent "
                                         "socket appeared" % proc.returncode)
                    if time.monotonic() > deadline:
                        raise BenchError("agent socket never appeared")
                    time.sleep(0.001)
            try:
                payload = wait_hello(conn, deadline)
            except BenchError as e:
                if proc.poll() is not None:
                    raise BenchError("%s (qemu exited with status %s)" % (e, proc.returncode))
                raise
            ms = (time.monotonic() - t0) * 1000.0
        finally:
            conn.close()
        if verbose:
            log("HELLO: " + describe_hello(payload))
        return ms
    except BenchError as e:
        tail = console_tail(console)
        raise BenchError(str(e) + ("\n  guest console (last lines):\n" + tail if tail else ""))
    finally:
        if proc is not None:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def percentile(samples, p):
    s = sorted(samples)
    return s[max(0, math.ceil(p / 100.0 * len(s)) - 1)]


def main():
    ap = argparse.ArgumentParser(description="Boot a bare QEMU to agent-ready and time it.")
    ap.add_argument("--image", required=True, help="image directory (with manifest)")
    ap.add_argument("--runs", type=int, default=5, help="measured runs (default 5)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="unmeasured runs first, to warm the page cache (default 1)")
    ap.add_argument("--json", action="store_true", help="print only the JSON result on stdout")
    ap.add_argument("--accel", choices=("auto", "tcg", "kvm"),
                    default="auto",
                    help="auto: KVM only where /dev/kvm is kvm_intel/kvm_amd, else TCG")
    ap.add_argument("--memory", type=int, default=512, help="guest MiB (default 512)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per run (default 120)")
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--qemu-img", default="qemu-img")
    ap.add_argument("--bios", default=QBOOT if os.path.exists(QBOOT) else "",
                    help="firmware (default qboot; empty: QEMU's default)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")

    try:
        man, files = read_manifest(args.image)
        for tool in (args.qemu, args.qemu_img):
            if not shutil.which(tool):
                raise BenchError("%s not found (apt-get install qemu-system-x86 qemu-utils)" % tool)
        accel = args.accel
        if accel == "auto":
            accel = "kvm" if kvm_usable() else "tcg"
        if not args.bios:
            log("warning: qboot not found, using QEMU's default firmware (slower)")
        log("image %s (kernel %s), accel %s, %d MiB, %d warm-up + %d runs"
            % (args.image, man.get("kernel_version", "?"), accel, args.memory, args.warmup, args.runs))
        for i in range(args.warmup):
            ms = one_run(args, man, files, accel, args.verbose)
            log("warm-up %d: %.0f ms" % (i + 1, ms))
        samples = []
        for i in range(args.runs):
            ms = one_run(args, man, files, accel, args.verbose and i == 0)
            samples.append(round(ms, 1))
            log("run %d/%d: %.0f ms" % (i + 1, args.runs, ms))
    except BenchError as e:
        log("error: %s" % e)
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130

    result = {
        "name": "floor_boot_to_agent_ready",
        "runs": args.runs,
        "p50_ms": round(statistics.median(samples), 1),
        "p95_ms": round(percentile(samples, 95), 1),
        "samples_ms": samples,
        "accel": accel,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print("floor_boot_to_agent_ready: p50 %.0f ms, p95 %.0f ms over %d runs (%s)"
              % (result["p50_ms"], result["p95_ms"], args.runs, accel))
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
