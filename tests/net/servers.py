#!/usr/bin/python3
"""Upstream servers of the libsandbox test network (tests/net/README.md).

Runs inside the test network namespace, started by tests/net/testnet.sh:
  - a DNS server (UDP and TCP 53) answering from tests/net/zone, logging
    every query to dns-queries.log before it answers;
  - on every server address: HTTP on 80 and 8080, HTTPS on 443 and 8443
    (certificate chosen by SNI), a TCP echo on 9000.

Python 3 standard library only. One thread per connection, so a client
that stops reading blocks only its own thread; every socket has an idle
timeout so abandoned connections are reclaimed. Binds as root, then drops
to an unprivileged user before serving anything.
"""

import argparse
import base64
import grp
import gzip
import hashlib
import http.server
import ipaddress
import itertools
import json
import os
import pwd
import selectors
import socket
import ssl
import struct
import sys
import threading
import time
import traceback

HTTP_PORTS = (80, 8080)
HTTPS_PORTS = (443, 8443)
ECHO_PORT = 9000
DNS_PORT = 53

# Socket timeout: a read waits at most this long for data, and one write
# (at most IO_CHUNK bytes) must be taken by the client within it; otherwise
# the server drops the connection. Long enough for a test that pauses its
# reader for a while; short enough that abandoned connections go away.
IDLE_TIMEOUT = 120.0
HANDSHAKE_TIMEOUT = 30.0
MAX_CONNECTIONS = 2000
# /bytes/N: byte at offset i is (i mod 251). 251 is prime, so a chunk lost,
# duplicated or reordered at any power-of-two size changes the digest.
PATTERN_MOD = 251
PATTERN_BLOCK = PATTERN_MOD * 8192  # ~2 MiB, a whole number of periods
MAX_BYTES = 1 << 40
IO_CHUNK = 1 << 20
ECHO_BODY_MAX = 1 << 16  # /echo includes the body itself up to this size
WS_MAX_PAYLOAD = 16 << 20

DOC_NETS = [ipaddress.ip_network(n) for n in
            ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]

BAD_CERT_NAMES = ("expired", "selfsigned", "wrongname")


class Log:
    """A line-oriented log file shared by threads; every line is flushed
    before the caller goes on, so tests can read it right after an action."""

    def __init__(self, path):
        self.f = open(path, "a", buffering=1, encoding="utf-8", errors="backslashreplace")
        self.lock = threading.Lock()

    def line(self, text):
        with self.lock:
            self.f.write(text + "\n")
            self.f.flush()


ERRLOG = None  # servers.log: start-up, handshake failures, tracebacks
ACCESS = None  # access.log: one JSON object per HTTP request / echo session
DNSLOG = None  # dns-queries.log


def err(msg):
    ERRLOG.line("%.3f %s" % (time.time(), msg))


# ------------------------------------------------------------------- zone

def load_zone(path):
    """Returns (exact, wildcard): dicts from lower-case name to [(type, addr)]."""
    exact, wild = {}, {}
    with open(path, encoding="ascii") as f:
        for n, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 3 or parts[1] not in ("A", "AAAA"):
                raise SystemExit("%s:%d: expected NAME A|AAAA ADDRESS" % (path, n))
            name, rtype, value = parts[0].lower().rstrip("."), parts[1], parts[2]
            addr = ipaddress.ip_address(value)
            if (rtype == "A") != (addr.version == 4):
                raise SystemExit("%s:%d: %s record with %s" % (path, n, rtype, value))
            table = exact
            if name.startswith("*."):
                table, name = wild, name[2:]
            table.setdefault(name, []).append((rtype, addr))
    return exact, wild


def zone_server_addresses(exact, wild):
    out = []
    for recs in itertools.chain(exact.values(), wild.values()):
        for _, addr in recs:
            if any(addr in net for net in DOC_NETS) and addr not in out:
                out.append(addr)
    return out


# -------------------------------------------------------------------- DNS

QTYPES = {1: "A", 28: "AAAA", 255: "ANY", 5: "CNAME", 15: "MX", 16: "TXT", 2: "NS",
          6: "SOA", 12: "PTR", 33: "SRV", 65: "HTTPS", 64: "SVCB"}
RCODES = {0: "NOERROR", 1: "FORMERR", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
DNS_TTL = 5


class FormErr(Exception):
    pass


def dns_name_text(labels):
    """Presentation form of a query name, case kept, odd bytes escaped."""
    out = []
    for lab in labels:
        s = ""
        for b in lab:
            c = chr(b)
            if c.isalnum() or c in "-_*":
                s += c
            else:
                s += "\\%03d" % b
        out.append(s)
    return ".".join(out) if out else "."


def dns_parse_question(msg):
    """Returns (id, flags, labels, qtype, qclass, end of question)."""
    if len(msg) < 12:
        raise FormErr("short header")
    qid, flags, qd = struct.unpack("!HHH", msg[:6])
    if qd != 1:
        raise FormErr("qdcount %d" % qd)
    pos, labels, total = 12, [], 0
    while True:
        if pos >= len(msg):
            raise FormErr("name runs past the message")
        n = msg[pos]
        pos += 1
        if n == 0:
            break
        if n & 0xC0:
            raise FormErr("compressed or extended label in the question")
        if pos + n > len(msg):
            raise FormErr("label runs past the message")
        total += n + 1
        if total > 255:
            raise FormErr("name longer than 255 bytes")
        labels.append(msg[pos:pos + n])
        pos += n
    if pos + 4 > len(msg):
        raise FormErr("no type/class")
    qtype, qclass = struct.unpack("!HH", msg[pos:pos + 4])
    return qid, flags, labels, qtype, qclass, pos + 4


class DnsZone:
    def __init__(self, exact, wild):
        self.exact, self.wild = exact, wild

    def lookup(self, labels):
        """Records of a name, or None if it does not exist."""
        try:
            name = ".".join(l.decode("ascii") for l in labels).lower()
        except UnicodeDecodeError:
            return None
        if name in self.exact:
            return self.exact[name]
        parts = name.split(".")
        for i in range(1, len(parts)):
            recs = self.wild.get(".".join(parts[i:]))
            if recs is not None:
                return recs
        return None

    def answer(self, msg, proto, client):
        """The response to one query message (None: drop it), logging it."""
        try:
            qid, flags, labels, qtype, qclass, qend = dns_parse_question(msg)
        except FormErr as e:
            if len(msg) < 12 or msg[2] & 0x80:
                return None
            DNSLOG.line("%.3f %s %s %d - - FORMERR (%s)" % (time.time(), proto, client[0],
                                                             client[1], e))
            return msg[:2] + struct.pack("!HHHHH", 0x8001, 0, 0, 0, 0)
        if flags & 0x8000:
            return None  # a response: never answer those
        opcode = (flags >> 11) & 0xF
        question = msg[12:qend]
        answers = []
        if opcode != 0:
            rcode = 4
        elif qclass not in (1, 255):
            rcode = 5
        else:
            recs = self.lookup(labels)
            if recs is None:
                rcode = 3
            else:
                rcode = 0
                for rtype, addr in recs:
                    code = 1 if rtype == "A" else 28
                    if qtype in (code, 255):
                        answers.append(struct.pack("!HHHIH", 0xC00C, code, 1, DNS_TTL,
                                                   len(addr.packed)) + addr.packed)
        DNSLOG.line("%.3f %s %s %d %s %s %s" % (
            time.time(), proto, client[0], client[1], dns_name_text(labels),
            QTYPES.get(qtype, "TYPE%d" % qtype), RCODES[rcode]))
        rflags = 0x8000 | (opcode << 11) | 0x0400 | (flags & 0x0100) | rcode
        head = struct.pack("!HHHHHH", qid, rflags, 1, len(answers), 0, 0)
        return head + question + b"".join(answers)


def dns_udp_loop(sock, zone):
    while True:
        try:
            msg, peer = sock.recvfrom(4096)
            resp = zone.answer(msg, "udp", peer)
            if resp is not None:
                sock.sendto(resp, peer)
        except Exception:
            err("dns udp: " + traceback.format_exc())


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def dns_tcp_conn(sock, peer, zone):
    while True:
        head = recv_exact(sock, 2)
        if head is None:
            return
        msg = recv_exact(sock, struct.unpack("!H", head)[0])
        if msg is None:
            return
        resp = zone.answer(msg, "tcp", peer)
        if resp is None:
            return
        sock.sendall(struct.pack("!H", len(resp)) + resp)


# ------------------------------------------------------------------- HTTP

CONN_IDS = itertools.count(1)


class ConnInfo:
    """What a handler needs to know about its connection."""

    def __init__(self, tls, local, peer, sni=None, tls_version=None, alpn=None):
        self.tls, self.local, self.peer = tls, local, peer
        self.sni, self.tls_version, self.alpn = sni, tls_version, alpn
        self.id = next(CONN_IDS)
        self.requests = 0


class BadRequest(Exception):
    pass


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sbx-testnet/1"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    disable_nagle_algorithm = True

    # self.server is the ConnInfo (socketserver's handler API calls it server)
    def log_request(self, code="-", size="-"):
        pass  # access.log has every request; servers.log keeps errors only

    def log_message(self, fmt, *args):
        err("http %s: %s" % (self.client_address[0], fmt % args))

    def send_response(self, code, message=None):
        self.sbx_status = code
        super().send_response(code, message)

    def handle_one_request(self):
        self.sbx_status = None
        self.sbx_in = 0
        self.sbx_out = 0
        self.sbx_started = time.time()
        super().handle_one_request()

    # Every method goes through dispatch; unknown ones get 501 from the base.
    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_GET

    def dispatch(self):
        info = self.server
        info.requests += 1
        try:
            path = self.path
            if path.startswith(("http://", "https://")):  # absolute-form target
                rest = path.split("://", 1)[1]
                path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
            route, _, query = path.partition("?")
            if route == "/echo":
                self.route_echo()
            elif route.startswith("/bytes/"):
                self.route_bytes(route[len("/bytes/"):], query)
            elif route == "/sha256":
                self.route_sha256()
            elif route == "/headers-echo":
                self.route_headers_echo(query)
            elif route.startswith("/status/"):
                self.route_status(route[len("/status/"):])
            elif route == "/ws":
                self.route_ws()
            elif route == "/":
                self.read_body(None)
                self.reply(200, "text/plain", ("sbx-testnet %s port %d\n" % (
                    info.local[0], info.local[1])).encode())
            else:
                self.read_body(None)
                self.reply(404, "text/plain", b"not found\n")
        except BadRequest as e:
            self.close_connection = True
            if self.sbx_status is None:
                self.reply(400, "text/plain", ("bad request: %s\n" % e).encode())
        finally:
            self.access_log()

    def access_log(self):
        info = self.server
        ACCESS.line(json.dumps({
            "time": round(self.sbx_started, 3), "conn": info.id, "request": info.requests,
            "local_addr": info.local[0], "local_port": info.local[1],
            "client_addr": info.peer[0], "client_port": info.peer[1],
            "tls": info.tls, "sni": info.sni, "method": self.command, "target": self.path,
            "host": self.headers.get("Host") if self.headers else None,
            # every header as received: the secrets tests check on this
            # side what the proxy substituted (the guest sees placeholders)
            "headers": [[k, v] for k, v in self.headers.items()] if self.headers else [],
            "status": self.sbx_status, "body_in": self.sbx_in, "body_out": self.sbx_out,
            "duration": round(time.time() - self.sbx_started, 3)}))

    # --------------------------------------------------------------- bodies
    def read_body(self, sink):
        """Reads the request body (chunked or Content-Length), feeding it to
        sink(bytes) piece by piece. Returns (length, chunked)."""
        te = self.headers.get("Transfer-Encoding")
        if te is not None:
            if te.strip().lower().split(",")[-1].strip() != "chunked":
                raise BadRequest("unsupported Transfer-Encoding %r" % te)
            return self.read_chunked(sink), True
        cl = self.headers.get_all("Content-Length") or []
        if not cl:
            return 0, False
        if len(set(v.strip() for v in cl)) != 1 or not cl[0].strip().isdigit():
            raise BadRequest("invalid Content-Length")
        left = total = int(cl[0])
        while left:
            data = self.rfile.read(min(left, IO_CHUNK))
            if not data:
                raise BadRequest("body shorter than Content-Length")
            left -= len(data)
            self.sbx_in += len(data)
            if sink:
                sink(data)
        return total, False

    def read_chunked(self, sink):
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise BadRequest("bad chunk size line")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadRequest("bad chunk size %r" % size_text) from None
            if size < 0:
                raise BadRequest("negative chunk size")
            if size == 0:
                break
            left = size
            while left:
                data = self.rfile.read(min(left, IO_CHUNK))
                if not data:
                    raise BadRequest("body ends inside a chunk")
                left -= len(data)
                if sink:
                    sink(data)
            total += size
            self.sbx_in += size
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise BadRequest("chunk not followed by CRLF")
        for _ in range(100):  # trailer section
            line = self.rfile.readline(65537)
            if line in (b"\r\n", b"\n"):
                return total
            if not line:
                raise BadRequest("body ends inside the trailer")
        raise BadRequest("too many trailer lines")

    # -------------------------------------------------------------- replies
    def start_reply(self, code, ctype, length, extra=()):
        self.send_response(code)
        if ctype:
            self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.send_header("X-Testnet-Server", "%s:%d" % (self.server.local[0],
                                                         self.server.local[1]))
        for k, v in extra:
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def reply(self, code, ctype, body, extra=()):
        no_body = code in (204, 304)
        self.start_reply(code, ctype if not no_body else None,
                         None if no_body else len(body), extra)
        if self.command != "HEAD" and not no_body:
            self.write(body)

    def write(self, data):
        self.connection.sendall(data)
        self.sbx_out += len(data)

    # --------------------------------------------------------------- routes
    def route_echo(self):
        h = hashlib.sha256()
        kept = bytearray()

        def sink(data):
            h.update(data)
            if len(kept) <= ECHO_BODY_MAX:
                kept.extend(data[:ECHO_BODY_MAX + 1 - len(kept)])

        length, chunked = self.read_body(sink)
        info = self.server
        doc = {
            "method": self.command,
            "path": self.path,
            "version": self.request_version,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_sha256": h.hexdigest(),
            "body_length": length,
            "body_chunked": chunked,
            "body": kept.decode("latin-1") if length <= ECHO_BODY_MAX else None,
            "local_addr": info.local[0],
            "local_port": info.local[1],
            "client_addr": info.peer[0],
            "client_port": info.peer[1],
            "tls": info.tls,
            "sni": info.sni,
            "tls_version": info.tls_version,
            "alpn": info.alpn,
            "connection_id": info.id,
            "request_on_connection": info.requests,
        }
        self.reply(200, "application/json", (json.dumps(doc, indent=1) + "\n").encode())

    def route_bytes(self, count, query):
        self.read_body(None)
        if not count.isdigit() or int(count) > MAX_BYTES:
            raise BadRequest("/bytes/N needs 0 <= N <= 2^40")
        n = int(count)
        chunked = "chunked=1" in query.split("&")
        extra = [("X-Pattern", "byte i = i mod %d" % PATTERN_MOD)]
        if chunked:
            extra.append(("Transfer-Encoding", "chunked"))
        self.start_reply(200, "application/octet-stream", None if chunked else n, extra)
        if self.command == "HEAD":
            return
        if chunked:
            self.stream_chunked(n)
        elif self.server.tls:
            self.stream_pattern(n)
        else:
            self.sendfile_pattern(n)

    def stream_pattern(self, n):
        mv, off = memoryview(PATTERN), 0
        while off < n:
            start = off % PATTERN_BLOCK
            piece = mv[start:start + min(n - off, PATTERN_BLOCK - start, IO_CHUNK)]
            self.write(piece)
            off += len(piece)

    def stream_chunked(self, n):
        mv, off = memoryview(PATTERN), 0
        while off < n:
            start = off % PATTERN_BLOCK
            piece = mv[start:start + min(n - off, PATTERN_BLOCK - start, 65536)]
            self.write(b"%x\r\n" % len(piece) + bytes(piece) + b"\r\n")
            off += len(piece)
        self.write(b"0\r\n\r\n")

    def sendfile_pattern(self, n):
        with open(PATTERN_PATH, "rb") as f:
            off = 0
            while off < n:
                start = off % PATTERN_BLOCK
                count = min(n - off, PATTERN_BLOCK - start)
                sent = self.connection.sendfile(f, start, count)
                if sent <= 0:
                    raise ConnectionError("sendfile sent nothing")
                off += sent
                self.sbx_out += sent

    def route_sha256(self):
        h = hashlib.sha256()
        length, chunked = self.read_body(h.update)
        body = json.dumps({"sha256": h.hexdigest(), "length": length, "chunked": chunked})
        self.reply(200, "application/json", (body + "\n").encode())

    def route_headers_echo(self, query):
        self.read_body(None)
        auth = self.headers.get("Authorization", "")
        body = (auth + "\n").encode("latin-1", "replace")
        extra = [("X-Echo-Authorization", auth)]
        if "gzip=1" in query.split("&"):
            # the documented limit of echo protection: compressed bodies
            body = gzip.compress(body)
            extra.append(("Content-Encoding", "gzip"))
        self.reply(200, "text/plain", body, extra)

    def route_status(self, code):
        self.read_body(None)
        if not code.isdigit() or not 200 <= int(code) <= 599:
            raise BadRequest("/status/N needs 200 <= N <= 599")
        self.reply(int(code), "text/plain", ("status %s\n" % code).encode())

    # ------------------------------------------------------------ websocket
    def route_ws(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        upgrade = self.headers.get("Upgrade", "").lower()
        connection = [t.strip().lower() for t in self.headers.get("Connection", "").split(",")]
        try:
            key_ok = len(base64.b64decode(key, validate=True)) == 16
        except ValueError:
            key_ok = False
        if (self.command != "GET" or upgrade != "websocket" or "upgrade" not in connection
                or not key_ok or self.headers.get("Sec-WebSocket-Version") != "13"):
            self.read_body(None)
            self.reply(400, "text/plain", b"websocket handshake expected\n")
            return
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.close_connection = True
        self.ws_echo()

    def ws_frame(self, opcode, payload):
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        self.write(head + payload)

    def ws_read(self, n):
        data = self.rfile.read(n)
        if len(data) != n:
            raise ConnectionError("websocket peer went away")
        self.sbx_in += n
        return data

    def ws_echo(self):
        """Echoes every data frame (same opcode, unmasked), answers pings,
        returns the close frame."""
        while True:
            b0, b1 = self.ws_read(2)
            opcode, masked, n = b0 & 0x0F, b1 & 0x80, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self.ws_read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self.ws_read(8))[0]
            if not masked or n > WS_MAX_PAYLOAD:
                self.ws_frame(8, struct.pack("!H", 1002 if not masked else 1009))
                return
            mask = self.ws_read(4)
            data = self.ws_read(n)
            # unmask the whole payload at once with big-integer XOR
            key = (mask * (n // 4 + 1))[:n]
            payload = (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
            if opcode == 8:
                self.ws_frame(8, payload[:125])
                return
            if opcode == 9:
                self.ws_frame(10, payload)
            elif opcode in (0, 1, 2):
                # echo fragments as they come: same opcode, same FIN bit
                n = len(payload)
                fin = b0 & 0x80
                lenbytes = (struct.pack("!B", n) if n < 126 else
                            struct.pack("!BH", 126, n) if n < 65536 else
                            struct.pack("!BQ", 127, n))
                self.write(struct.pack("!B", fin | opcode) + lenbytes + payload)


# ------------------------------------------------------------- connections

class TlsConfig:
    """Server contexts: the good certificate and the three bad ones. SNI
    naming a bad host selects its certificate; any other SNI the good one;
    no SNI: the certificate of the address connected to."""

    def __init__(self, cert_dir, bad_addrs):
        self.good = self.context(cert_dir, "server")
        self.bad = {}
        for name in BAD_CERT_NAMES:
            self.bad["%s.example.test" % name] = self.context(cert_dir, name)
        self.by_addr = {}
        for name, addr in bad_addrs.items():
            self.by_addr[addr] = self.bad[name]

    def context(self, cert_dir, name):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(os.path.join(cert_dir, name + ".pem"),
                            os.path.join(cert_dir, name + ".key"))
        ctx.set_alpn_protocols(["http/1.1"])
        ctx.sni_callback = self.on_sni
        return ctx

    def on_sni(self, sslsock, server_name, _ctx):
        sslsock.sbx_sni = server_name
        if server_name is not None:
            sslsock.context = self.bad.get(server_name.lower(), self.good)
        return None

    def for_address(self, addr):
        return self.by_addr.get(addr, self.good)


def handle_http(sock, peer, local, tls_config):
    info = None
    if tls_config is not None:
        sock.settimeout(HANDSHAKE_TIMEOUT)
        ctx = tls_config.for_address(local[0])
        try:
            sock = ctx.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError) as e:
            err("tls handshake from %s to %s:%d failed: %s" % (peer[0], local[0], local[1], e))
            return
        info = ConnInfo(True, local, peer, getattr(sock, "sbx_sni", None), sock.version(),
                        sock.selected_alpn_protocol())
    else:
        info = ConnInfo(False, local, peer)
    sock.settimeout(IDLE_TIMEOUT)
    try:
        Handler(sock, peer, info)
    finally:
        try:
            sock.close()
        except OSError:
            pass


def handle_echo(sock, peer, local):
    total = 0
    started = time.time()
    try:
        while True:
            data = sock.recv(1 << 18)
            if not data:
                sock.shutdown(socket.SHUT_WR)
                break
            sock.sendall(data)
            total += len(data)
    finally:
        ACCESS.line(json.dumps({
            "time": round(started, 3), "echo": True, "local_addr": local[0],
            "local_port": local[1], "client_addr": peer[0], "client_port": peer[1],
            "bytes": total, "duration": round(time.time() - started, 3)}))


def short_peer(addr):
    return (addr[0], addr[1])


class Acceptor:
    """One thread accepts on every listening socket; each connection gets a
    thread of its own (bounded by MAX_CONNECTIONS)."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def listen(self, family, kind, addr, port, handler):
        s = socket.socket(family, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr, port))
        if kind == socket.SOCK_STREAM:
            s.listen(512)
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ, handler)
        return s

    def run(self):
        while True:
            for key, _ in self.sel.select():
                try:
                    conn, peer = key.fileobj.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue
                except OSError as e:
                    err("accept: %s" % e)
                    time.sleep(0.05)
                    continue
                if not self.slots.acquire(blocking=False):
                    err("connection limit reached, dropping %s" % (peer,))
                    conn.close()
                    continue
                conn.setblocking(True)
                local = short_peer(conn.getsockname())
                t = threading.Thread(target=self.serve, daemon=True,
                                     args=(key.data, conn, short_peer(peer), local))
                try:
                    t.start()
                except RuntimeError as e:  # out of threads: drop this one only
                    err("cannot start a thread for %s: %s" % (peer, e))
                    conn.close()
                    self.slots.release()

    def serve(self, handler, conn, peer, local):
        try:
            conn.settimeout(IDLE_TIMEOUT)
            handler(conn, peer, local)
        except (ConnectionError, TimeoutError, socket.timeout, ssl.SSLError) as e:
            err("%s:%d <- %s: %s" % (local[0], local[1], peer[0], e))
        except Exception:
            err("%s:%d <- %s: %s" % (local[0], local[1], peer[0], traceback.format_exc()))
        finally:
            try:
                conn.close()
            except OSError:
                pass
            self.slots.release()


# -------------------------------------------------------------------- main

PATTERN = b""
PATTERN_PATH = ""


def drop_privileges(user):
    pw = pwd.getpwnam(user)
    gid = grp.getgrnam("nogroup").gr_gid if user == "nobody" else pw.pw_gid
    os.setgroups([])
    os.setgid(gid)
    os.setuid(pw.pw_uid)


def main():
    global ERRLOG, ACCESS, DNSLOG, PATTERN, PATTERN_PATH
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zone", required=True)
    ap.add_argument("--run-dir", required=True, help="certificates in, logs and pid out")
    ap.add_argument("--dns", action="append", default=[], help="DNS server address")
    ap.add_argument("--extra", action="append", default=[],
                    help="server address not named in the zone")
    ap.add_argument("--user", default="nobody")
    args = ap.parse_args()

    run = args.run_dir
    ERRLOG = Log(os.path.join(run, "servers.log"))
    ACCESS = Log(os.path.join(run, "access.log"))
    DNSLOG = Log(os.path.join(run, "dns-queries.log"))
    exact, wild = load_zone(args.zone)
    addrs = zone_server_addresses(exact, wild)
    for a in args.extra:
        a = ipaddress.ip_address(a)
        if a not in addrs:
            addrs.append(a)
    dns_addrs = [ipaddress.ip_address(a) for a in args.dns]
    addrs = [a for a in addrs if a not in dns_addrs]

    PATTERN = bytes(range(PATTERN_MOD)) * (PATTERN_BLOCK // PATTERN_MOD)
    PATTERN_PATH = os.path.join(run, "pattern.bin")
    with open(PATTERN_PATH, "wb") as f:
        f.write(PATTERN)
    os.chmod(PATTERN_PATH, 0o644)

    bad_addrs = {}
    for name in BAD_CERT_NAMES:
        for rtype, a in exact.get("%s.example.test" % name, []):
            bad_addrs["%s.example.test" % name] = str(a)
    tls_config = TlsConfig(run, bad_addrs)
    zone = DnsZone(exact, wild)

    acceptor = Acceptor()
    udp = []
    for a in dns_addrs:
        fam = socket.AF_INET if a.version == 4 else socket.AF_INET6
        udp.append(acceptor.listen(fam, socket.SOCK_DGRAM, str(a), DNS_PORT, None))
        acceptor.listen(fam, socket.SOCK_STREAM, str(a), DNS_PORT,
                        lambda s, p, l: dns_tcp_conn(s, p, zone))
    for a in addrs:
        fam = socket.AF_INET if a.version == 4 else socket.AF_INET6
        for port in HTTP_PORTS:
            acceptor.listen(fam, socket.SOCK_STREAM, str(a), port,
                            lambda s, p, l: handle_http(s, p, l, None))
        for port in HTTPS_PORTS:
            acceptor.listen(fam, socket.SOCK_STREAM, str(a), port,
                            lambda s, p, l: handle_http(s, p, l, tls_config))
        acceptor.listen(fam, socket.SOCK_STREAM, str(a), ECHO_PORT, handle_echo)

    pid_file = open(os.path.join(run, "servers.pid"), "w")
    drop_privileges(args.user)
    for s in udp:
        threading.Thread(target=dns_udp_loop, args=(s, zone), daemon=True).start()
    err("serving: dns on %s; http/https/echo on %s as %s" % (
        ", ".join(map(str, dns_addrs)), ", ".join(map(str, addrs)), args.user))
    pid_file.write("%d\n" % os.getpid())
    pid_file.close()
    acceptor.run()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
