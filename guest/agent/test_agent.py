#!/usr/bin/env python3
"""Host-side tests for sandbox-agent, in test mode (--connect SOCK).

The harness is the host: it listens on a UNIX socket, starts the agent,
and speaks doc/protocol.md with its own implementation of the framing
(deliberately not lib/proto.c), checking every frame the agent sends as
strictly as the host library must: header fields, payload encodings,
per-stream order and flow-control credit. Commands run on this machine,
as the agent is not PID 1 here.

usage: test_agent.py [path/to/sandbox-agent]
Prints one line per test and `N passed, N failed`; exits 1 on failure.
"""

import errno
import hashlib
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

HDR = struct.Struct("<IBBHI")
MAX_PAYLOAD = 65536
WINDOW0 = 256 * 1024

HELLO, PING, PONG, ERROR, SHUTDOWN = 0x01, 0x02, 0x03, 0x04, 0x05
EXEC_START, EXEC_STARTED, STDIN, STDIN_EOF = 0x10, 0x11, 0x12, 0x13
STDOUT, STDERR, EXIT, SIGNAL, WINDOW = 0x14, 0x15, 0x16, 0x17, 0x20
TCP_OPEN, TCP_DATA, TCP_EOF, TCP_CLOSE = 0x30, 0x31, 0x32, 0x33
DNS_QUERY, DNS_REPLY = 0x38, 0x39
AGENT_BIT = 0x80000000
CLOSE_GRACEFUL, CLOSE_ABORT = 0, 1
R_DONE, R_POLICY, R_REFUSED, R_UNREACH, R_RESET, R_LIMIT, R_ERROR = range(7)
F_STDIN = 1
FILE_OP, FILE_ENTRY, FILE_DATA, FILE_END, FILE_CANCEL = 0x40, 0x41, 0x42, 0x43, 0x44
FOP_STAT, FOP_LIST, FOP_MKDIR, FOP_REMOVE, FOP_PUT, FOP_GET = 1, 2, 3, 4, 5, 6
FOP_F_PARENTS, FOP_F_RECURSIVE, FOP_F_NOFOLLOW, FOP_F_REGULAR = 1, 2, 4, 8
FT_FILE, FT_DIR, FT_SYMLINK, FT_OTHER = 1, 2, 3, 4
FILE_COST = 12  # header's worth of credit per FILE_ENTRY / FILE_DATA

ENV = [b"PATH=/usr/local/bin:/usr/bin:/bin", b"LC_ALL=C"]


class ProtocolError(Exception):
    """The agent sent something the host must reject."""


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def wstr(b):
    return struct.pack("<I", len(b)) + b


def rstr(p, off):
    if off + 4 > len(p):
        raise ProtocolError("string length past end")
    (n,) = struct.unpack_from("<I", p, off)
    off += 4
    if off + n > len(p):
        raise ProtocolError("string past end")
    s = p[off:off + n]
    if b"\0" in s:
        raise ProtocolError("NUL in string")
    return s, off + n


def b(x):
    return x if isinstance(x, bytes) else x.encode()


def exec_start_payload(argv, env=ENV, cwd=b"", flags=0, timeout_ms=0):
    p = struct.pack("<IIII", flags, timeout_ms, len(argv), len(env)) + wstr(b(cwd))
    for a in argv:
        p += wstr(b(a))
    for e in env:
        p += wstr(b(e))
    return p


class Stream:
    def __init__(self, sid, auto_window):
        self.sid = sid
        self.auto_window = auto_window
        self.pid = None
        self.out = bytearray()
        self.err = bytearray()
        self.exit = None   # (kind, timed_out, value)
        self.error = None  # (errno, message)
        self.credit = WINDOW0        # agent -> host data we allow
        self.stdin_credit = WINDOW0  # host -> agent data we may send
        self.stdin_pending = bytearray()
        self.stdin_eof = False       # send STDIN_EOF once pending is sent
        self.stdin_eof_sent = False
        self.windows_rx = 0          # WINDOW credit received from the agent
        self.t0 = time.monotonic()
        self.t_end = None

    @property
    def done(self):
        return self.exit is not None or self.error is not None


class TcpStream:
    """A guest TCP connection as the host sees it (doc/protocol.md, TCP)."""

    def __init__(self, sid, family, port, addr):
        self.sid = sid
        self.family = family
        self.port = port
        self.addr = addr              # text form of the original destination
        self.credit = WINDOW0         # agent -> host data we allow
        self.send_credit = WINDOW0    # host -> agent data we may send
        self.rx = bytearray()         # everything the guest sent
        self.rx_eof = False           # TCP_EOF received
        self.closed = None            # (how, reason) once TCP_CLOSE crossed
        self.closed_by_host = False
        self.pending = bytearray()    # host -> agent data waiting for credit
        self.eof_pending = False      # send TCP_EOF once pending is sent
        self.eof_sent = False
        self.auto_window = True       # grant back what we receive at once
        self.upstream = None          # relay socket (NetSim)
        self.up_eof = False

    @property
    def dst(self):
        return (self.family, self.addr, self.port)


class DnsQuery:
    def __init__(self, sid, transport, msg):
        self.sid = sid
        self.transport = transport
        self.msg = msg
        self.answered = False


def dns_qname(msg):
    """The question name of a DNS message, lower case, without the dot."""
    off, labels = 12, []
    while off < len(msg) and msg[off]:
        n = msg[off]
        labels.append(msg[off + 1:off + 1 + n].decode(errors="replace"))
        off += 1 + n
    qtype = struct.unpack_from(">H", msg, off + 1)[0] if off + 3 <= len(msg) else 0
    return ".".join(labels).lower(), qtype, off + 5


def dns_answer(query, addrs):
    """A reply to query with A/AAAA records from addrs {qtype: [bytes]}."""
    name, qtype, qend = dns_qname(query)
    rdatas = addrs.get(qtype, [])
    hdr = query[:2] + struct.pack(">HHHHH", 0x8180, 1, len(rdatas), 0, 0)
    out = hdr + query[12:qend]
    for rd in rdatas:
        out += struct.pack(">HHHIH", 0xC00C, qtype, 1, 60, len(rd)) + rd
    return out


class NetSim:
    """The host side of network streams, for tests: accepts each TCP_OPEN by
    connecting to route(stream) -> (host, port) or None (refuse with
    TCP_CLOSE abort, reason policy), relays both ways within the credit,
    and answers DNS_QUERY with dns(query) -> reply bytes, b"" (no answer)
    or None (leave it unanswered)."""

    def __init__(self, route=None, dns=None):
        self.route = route
        self.dns = dns
        self.opened = []   # every TcpStream, in order
        self.queries = []  # every DnsQuery

    def on_open(self, conn, st):
        self.opened.append(st)
        target = self.route(st) if self.route else None
        if target is None:
            conn.net_close(st, CLOSE_ABORT, R_POLICY)
            return
        try:
            st.upstream = socket.create_connection(target, timeout=5)
            st.upstream.setblocking(False)
        except OSError:
            conn.net_close(st, CLOSE_ABORT, R_REFUSED)

    def on_query(self, conn, q):
        self.queries.append(q)
        if self.dns:
            reply = self.dns(q)
            if reply is not None:
                conn.dns_reply(q, reply)

    def on_data(self, conn, st, data):
        if st.upstream:
            st.upstream.setblocking(True)
            try:
                st.upstream.sendall(data)
            except OSError:
                conn.net_close(st, CLOSE_ABORT, R_RESET)
            else:
                st.upstream.setblocking(False)

    def on_eof(self, conn, st):
        if st.upstream:
            try:
                st.upstream.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._maybe_done(conn, st)

    def on_close(self, conn, st):
        if st.upstream:
            st.upstream.close()
            st.upstream = None

    def fds(self, conn):
        return [st.upstream for st in conn.net.values()
                if isinstance(st, TcpStream) and st.upstream and not st.up_eof
                and len(st.pending) < (1 << 20)]

    def readable(self, conn, sock):
        st = next(x for x in conn.net.values() if isinstance(x, TcpStream) and x.upstream is sock)
        try:
            data = sock.recv(1 << 18)
        except BlockingIOError:
            return
        except OSError:
            conn.net_close(st, CLOSE_ABORT, R_RESET)
            return
        if data:
            st.pending += data
        else:
            st.up_eof = True
            st.eof_pending = True
            self._maybe_done(conn, st)

    def _maybe_done(self, conn, st):
        # both EOFs crossed and everything written: the host closes
        if st.rx_eof and st.eof_pending and not st.pending and st.closed is None:
            conn.pump_net()
            conn.net_close(st, CLOSE_GRACEFUL, R_DONE)
def file_op_payload(op, path, flags=0, mode=0, arg=b""):
    return struct.pack("<III", op, flags, mode) + wstr(b(path)) + wstr(b(arg))


def entry_payload(ftype, name, mode=0o644, size=0, target=b""):
    return (struct.pack("<BBHIQqII", ftype, 0, 0, mode, size, 0, 0, 0) + wstr(b(name)) +
            wstr(b(target)))


def parse_entry(p):
    if len(p) < 32:
        raise ProtocolError("short FILE_ENTRY")
    ftype, z8, z16, mode, size, mtime, uid, gid = struct.unpack_from("<BBHIQqII", p)
    name, off = rstr(p, 32)
    target, off = rstr(p, off)
    if off != len(p) or z8 or z16 or not 1 <= ftype <= 4 or mode > 0o7777:
        raise ProtocolError("bad FILE_ENTRY")
    if (ftype == FT_SYMLINK) != (len(target) > 0):
        raise ProtocolError("link target on a non-symlink, or none on a symlink")
    return {"type": ftype, "mode": mode, "size": size, "name": name, "target": target,
            "data": bytearray()}


class FStream:
    def __init__(self, sid, auto_window):
        self.sid = sid
        self.auto_window = auto_window
        self.entries = []
        self.ended = False
        self.error = None
        self.credit = WINDOW0     # what the agent may still send us
        self.in_credit = WINDOW0  # what we may still send
        self.received = 0

    @property
    def done(self):
        return self.ended or self.error is not None


class Conn:
    """One host connection, with strict checking of agent frames."""

    def __init__(self, sock):
        self.sock = sock
        self.rbuf = bytearray()
        self.streams = {}
        self.next_sid = 1
        self.errors0 = []
        self.pongs = []
        self.hello = None
        self.unexpected = []
        self.net = {}        # agent stream id -> TcpStream / DnsQuery, while live
        self.net_dead = set()  # ids that ended (frames in flight are ignored)
        self.net_max = 0     # highest agent stream counter seen
        self.sim = None      # NetSim answering TCP_OPEN / DNS_QUERY
        self.fstreams = {}

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- sending ----------------------------------------------------------
    def send(self, ftype, stream=0, payload=b"", flags=0, reserved=0, length=None):
        n = len(payload) if length is None else length
        self.sock.sendall(HDR.pack(n, ftype, flags, reserved, stream) + payload)

    def send_raw(self, data):
        self.sock.sendall(data)

    def window(self, sid, n):
        self.send(WINDOW, sid, struct.pack("<I", n))
        self.streams[sid].credit += n

    # -- receiving --------------------------------------------------------
    def _fill(self, timeout):
        ups = self.sim.fds(self) if self.sim else []
        r, _, _ = select.select([self.sock] + ups, [], [], max(timeout, 0))
        for u in r:
            if u is not self.sock:
                self.sim.readable(self, u)
        self.pump_net()
        if self.sock not in r:
            return
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("agent closed the connection")
        self.rbuf += data

    def _parse(self):
        if len(self.rbuf) < HDR.size:
            return None
        n, t, fl, rsv, sid = HDR.unpack_from(self.rbuf)
        if fl or rsv or n > MAX_PAYLOAD:
            raise ProtocolError("bad header %r" % bytes(self.rbuf[:12]))
        if len(self.rbuf) < HDR.size + n:
            return None
        p = bytes(self.rbuf[HDR.size:HDR.size + n])
        del self.rbuf[:HDR.size + n]
        self._apply(t, sid, p)
        return t, sid, p

    def _open_stream(self, sid, t):
        st = self.streams.get(sid)
        if st is None:
            raise ProtocolError("frame 0x%02x for unknown stream %d" % (t, sid))
        if st.done:
            raise ProtocolError("frame 0x%02x after the end of stream %d" % (t, sid))
        return st

    # -- network streams (agent-chosen ids) ---------------------------------
    def net_close(self, st, how, reason):
        if st.closed is not None:
            return
        self.send(TCP_CLOSE, st.sid, struct.pack("<BBH", how, reason, 0))
        st.closed = (how, reason)
        st.closed_by_host = True
        self._net_forget(st)

    def dns_reply(self, q, reply):
        self.send(DNS_REPLY, q.sid, reply)
        q.answered = True
        self._net_forget(q)

    def tcp_send(self, st, data, eof=False):
        st.pending += data
        st.eof_pending = st.eof_pending or eof
        self.pump_net()

    def _net_forget(self, x):
        self.net.pop(x.sid, None)
        self.net_dead.add(x.sid)
        if isinstance(x, TcpStream) and self.sim:
            self.sim.on_close(self, x)

    def pump_net(self):
        for st in list(self.net.values()):
            if not isinstance(st, TcpStream) or st.closed is not None:
                continue
            while st.pending and st.send_credit > 0:
                n = min(len(st.pending), st.send_credit, MAX_PAYLOAD)
                self.send(TCP_DATA, st.sid, bytes(st.pending[:n]))
                del st.pending[:n]
                st.send_credit -= n
            if st.eof_pending and not st.pending and not st.eof_sent:
                self.send(TCP_EOF, st.sid)
                st.eof_sent = True
                if self.sim:
                    self.sim._maybe_done(self, st)

    def _apply_net(self, t, sid, p):
        counter = sid & ~AGENT_BIT
        if t in (TCP_OPEN, DNS_QUERY):
            if counter <= self.net_max:
                raise ProtocolError("stream id 0x%08x not above the last (%d)" % (sid, self.net_max))
            self.net_max = counter
            if t == TCP_OPEN:
                if len(p) != 20:
                    raise ProtocolError("TCP_OPEN of %d bytes" % len(p))
                fam, z, port = struct.unpack_from("<BBH", p)
                raw = p[4:]
                if fam not in (4, 6) or z or (fam == 4 and any(raw[4:])):
                    raise ProtocolError("bad TCP_OPEN %r" % p)
                addr = socket.inet_ntop(socket.AF_INET, raw[:4]) if fam == 4 else \
                    socket.inet_ntop(socket.AF_INET6, raw)
                st = TcpStream(sid, fam, port, addr)
                self.net[sid] = st
                if self.sim:
                    self.sim.on_open(self, st)
            else:
                if len(p) < 4 + 12 or p[0] not in (0, 1) or any(p[1:4]):
                    raise ProtocolError("bad DNS_QUERY %r" % p[:16])
                q = DnsQuery(sid, p[0], p[4:])
                self.net[sid] = q
                if self.sim:
                    self.sim.on_query(self, q)
            return
        if counter == 0 or counter > self.net_max:
            raise ProtocolError("frame 0x%02x for agent stream 0x%08x never opened" % (t, sid))
        st = self.net.get(sid)
        if st is None:
            if sid in self.net_dead:
                return  # in flight when we ended it
            raise ProtocolError("frame 0x%02x for ended agent stream 0x%08x" % (t, sid))
        if not isinstance(st, TcpStream):
            raise ProtocolError("frame 0x%02x on DNS stream 0x%08x" % (t, sid))
        if t == TCP_DATA:
            if not 1 <= len(p) <= MAX_PAYLOAD:
                raise ProtocolError("TCP_DATA of %d bytes" % len(p))
            if st.rx_eof:
                raise ProtocolError("TCP_DATA after TCP_EOF")
            if len(p) > st.credit:
                raise ProtocolError("stream 0x%08x: %d bytes with %d credit" % (sid, len(p), st.credit))
            st.credit -= len(p)
            st.rx += p
            if self.sim:
                self.sim.on_data(self, st, p)
            if st.auto_window and st.closed is None:
                self.send(WINDOW, sid, struct.pack("<I", len(p)))
                st.credit += len(p)
        elif t == TCP_EOF:
            if p or st.rx_eof:
                raise ProtocolError("bad or duplicate TCP_EOF")
            st.rx_eof = True
            if self.sim:
                self.sim.on_eof(self, st)
        elif t == TCP_CLOSE:
            if len(p) != 4:
                raise ProtocolError("TCP_CLOSE of %d bytes" % len(p))
            how, reason, z = struct.unpack("<BBH", p)
            if how > 1 or reason > 6 or z:
                raise ProtocolError("bad TCP_CLOSE %r" % p)
            st.closed = (how, reason)
            self._net_forget(st)
        elif t == WINDOW:
            if len(p) != 4:
                raise ProtocolError("bad WINDOW")
            st.send_credit += struct.unpack("<I", p)[0]
            if st.send_credit > WINDOW0:
                raise ProtocolError("agent granted %d bytes, beyond what we sent" % st.send_credit)
        else:
            raise ProtocolError("frame 0x%02x not valid on a TCP stream" % t)

    def _apply_file(self, t, fs, p):
        if fs.done:
            raise ProtocolError("frame 0x%02x after the end of file stream %d" % (t, fs.sid))
        if t in (FILE_ENTRY, FILE_DATA):
            cost = len(p) + FILE_COST
            if cost > fs.credit:
                raise ProtocolError("file stream %d: %d bytes with %d credit"
                                    % (fs.sid, cost, fs.credit))
            fs.credit -= cost
            if t == FILE_ENTRY:
                fs.entries.append(parse_entry(p))
            else:
                if not fs.entries or fs.entries[-1]["type"] != FT_FILE or not p:
                    raise ProtocolError("FILE_DATA without a file entry")
                fs.entries[-1]["data"].extend(p)
                fs.received += len(p)
            if fs.auto_window:
                self.send(WINDOW, fs.sid, struct.pack("<I", cost))
                fs.credit += cost
        elif t == FILE_END:
            if p:
                raise ProtocolError("FILE_END with a payload")
            fs.ended = True
        elif t == ERROR:
            (e,) = struct.unpack_from("<i", p)
            msg, off = rstr(p, 4)
            if off != len(p):
                raise ProtocolError("trailing bytes in ERROR")
            fs.error = (e, msg)
        elif t == WINDOW:
            if len(p) != 4:
                raise ProtocolError("bad WINDOW")
            fs.in_credit += struct.unpack("<I", p)[0]
        else:
            raise ProtocolError("frame 0x%02x on file stream %d" % (t, fs.sid))

    def _apply(self, t, sid, p):
        if sid in self.fstreams:
            return self._apply_file(t, self.fstreams[sid], p)
        if sid & AGENT_BIT:
            if t not in (TCP_OPEN, TCP_DATA, TCP_EOF, TCP_CLOSE, WINDOW, DNS_QUERY):
                raise ProtocolError("frame 0x%02x on agent stream 0x%08x" % (t, sid))
            return self._apply_net(t, sid, p)
        if t in (TCP_OPEN, TCP_DATA, TCP_EOF, TCP_CLOSE, DNS_QUERY):
            raise ProtocolError("network frame 0x%02x on host stream %d" % (t, sid))
        if t in (HELLO, PONG) or (t == ERROR and sid == 0):
            if sid != 0:
                raise ProtocolError("control frame on stream %d" % sid)
        if t == HELLO:
            if len(p) < 12:
                raise ProtocolError("short HELLO")
            ver, z, maxp, win = struct.unpack_from("<HHII", p)
            name, off = rstr(p, 12)
            if off != len(p) or z != 0:
                raise ProtocolError("bad HELLO")
            self.hello = (ver, maxp, win, name)
        elif t == PONG:
            if len(p) > 64:
                raise ProtocolError("PONG over 64 bytes")
            self.pongs.append(p)
        elif t == ERROR:
            if len(p) < 4:
                raise ProtocolError("short ERROR")
            (e,) = struct.unpack_from("<i", p)
            msg, off = rstr(p, 4)
            if off != len(p):
                raise ProtocolError("trailing bytes in ERROR")
            if sid == 0:
                self.errors0.append((e, msg))
            else:
                st = self._open_stream(sid, t)
                st.error = (e, msg)
                st.t_end = time.monotonic()
        elif t == EXEC_STARTED:
            st = self._open_stream(sid, t)
            if st.pid is not None or len(p) != 4:
                raise ProtocolError("bad EXEC_STARTED")
            (st.pid,) = struct.unpack("<I", p)
        elif t in (STDOUT, STDERR):
            st = self._open_stream(sid, t)
            if st.pid is None:
                raise ProtocolError("data before EXEC_STARTED")
            if not 1 <= len(p) <= MAX_PAYLOAD:
                raise ProtocolError("data frame of %d bytes" % len(p))
            if len(p) > st.credit:
                raise ProtocolError("stream %d: %d bytes sent with %d credit"
                                    % (sid, len(p), st.credit))
            st.credit -= len(p)
            (st.out if t == STDOUT else st.err).extend(p)
            if st.auto_window:
                self.window(sid, len(p))
        elif t == EXIT:
            st = self._open_stream(sid, t)
            if st.pid is None or len(p) != 8:
                raise ProtocolError("bad EXIT")
            kind, to, z, val = struct.unpack("<BBHi", p)
            if kind > 1 or to > 1 or z:
                raise ProtocolError("bad EXIT fields")
            if kind == 0 and not 0 <= val <= 255:
                raise ProtocolError("bad exit code")
            if kind == 1 and not 1 <= val <= 64:
                raise ProtocolError("bad signal")
            st.exit = (kind, to, val)
            st.t_end = time.monotonic()
        elif t == WINDOW:
            st = self._open_stream(sid, t)
            if len(p) != 4 or st.pid is None:
                raise ProtocolError("bad WINDOW")
            (n,) = struct.unpack("<I", p)
            st.stdin_credit += n
            st.windows_rx += n
        else:
            raise ProtocolError("unknown frame type 0x%02x" % t)

    def _feed_stdin(self):
        for st in self.streams.values():
            if st.done:
                continue
            while st.stdin_pending and st.stdin_credit > 0:
                n = min(len(st.stdin_pending), st.stdin_credit, MAX_PAYLOAD)
                self.send(STDIN, st.sid, bytes(st.stdin_pending[:n]))
                del st.stdin_pending[:n]
                st.stdin_credit -= n
            if st.stdin_eof and not st.stdin_pending and not st.stdin_eof_sent:
                self.send(STDIN_EOF, st.sid)
                st.stdin_eof_sent = True

    def next_frame(self, timeout):
        end = time.monotonic() + timeout
        while True:
            f = self._parse()
            if f is not None:
                return f
            left = end - time.monotonic()
            if left <= 0:
                return None
            self._fill(left)

    def wait(self, cond, timeout=10.0):
        end = time.monotonic() + timeout
        while True:
            self._feed_stdin()
            self.pump_net()
            if cond():
                return True
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.next_frame(min(left, 0.05))

    def quiet(self, seconds):
        """Process frames for a while (e.g. to see that none come)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._feed_stdin()
            self.next_frame(end - time.monotonic())

    # -- commands ---------------------------------------------------------
    def start(self, argv, env=ENV, cwd=b"", flags=0, timeout_ms=0, stdin=None,
              auto_window=True):
        sid = self.next_sid
        self.next_sid += 1
        st = Stream(sid, auto_window)
        self.streams[sid] = st
        if stdin is not None:
            flags |= F_STDIN
            st.stdin_pending += stdin
            st.stdin_eof = True
        self.send(EXEC_START, sid, exec_start_payload(argv, env, cwd, flags, timeout_ms))
        return st

    def run(self, argv, timeout=20.0, **kw):
        st = self.start(argv, **kw)
        check(self.wait(lambda: st.done, timeout), "no EXIT for %r within %ss" % (argv, timeout))
        return st

    # -- file streams -------------------------------------------------------
    def fopen(self, op, path, flags=0, mode=0, arg=b"", auto_window=True):
        sid = self.next_sid
        self.next_sid += 1
        fs = FStream(sid, auto_window)
        self.fstreams[sid] = fs
        self.send(FILE_OP, sid, file_op_payload(op, path, flags, mode, arg))
        return fs

    def fsend(self, fs, t, p, timeout=10.0):
        """Send ENTRY/DATA within the credit the agent granted."""
        cost = len(p) + FILE_COST
        check(self.wait(lambda: fs.in_credit >= cost or fs.done, timeout), "no credit")
        if fs.done:
            return False
        fs.in_credit -= cost
        self.send(t, fs.sid, p)
        return True

    def fwait(self, fs, timeout=20.0):
        check(self.wait(lambda: fs.done, timeout), "file stream %d did not end" % fs.sid)
        return fs

    def ping(self, payload=b"ping", timeout=5.0):
        n = len(self.pongs)
        self.send(PING, 0, payload)
        check(self.wait(lambda: len(self.pongs) > n, timeout), "no PONG")
        check(self.pongs[n] == payload, "PONG payload differs")

    def expect_error0(self, timeout=5.0):
        n = len(self.errors0)
        check(self.wait(lambda: len(self.errors0) > n, timeout), "no ERROR on stream 0")
        return self.errors0[n]


def expect_exit(st, kind, value, timed_out=0):
    check(st.error is None, "ERROR instead of EXIT: %r" % (st.error,))
    check(st.exit == (kind, timed_out, value),
          "EXIT %r, expected %r" % (st.exit, (kind, timed_out, value)))


class Agent:
    def __init__(self, binary, tmp, mode="--connect", name="agent", net_ports=None):
        self.path = os.path.join(tmp, name + ".sock")
        self.log_path = os.path.join(tmp, name + ".log")
        self.mode = mode
        self.lsock = None
        if mode == "--connect":
            self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.lsock.bind(self.path)
            self.lsock.listen(8)
        self.log = open(self.log_path, "wb")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        env.pop("SANDBOX_AGENT_TEST_PORTS", None)
        self.net_ports = net_ports
        if net_ports:
            env["SANDBOX_AGENT_TEST_PORTS"] = "%d,%d" % net_ports
        self.proc = subprocess.Popen([binary, mode, self.path], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log, env=env)
        self.conn = None

    def connect(self, timeout=10.0):
        """Get the next connection from the agent and its HELLO."""
        if self.conn:
            self.conn.close()
        if self.mode == "--connect":
            self.lsock.settimeout(timeout)
            s, _ = self.lsock.accept()
        else:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            end = time.monotonic() + timeout
            while True:
                try:
                    s.connect(self.path)
                    break
                except OSError:
                    if time.monotonic() > end:
                        raise
                    time.sleep(0.02)
        s.settimeout(None)
        self.conn = Conn(s)
        check(self.conn.wait(lambda: self.conn.hello is not None, timeout), "no HELLO")
        return self.conn

    def alive(self):
        return self.proc.poll() is None

    def descendants(self):
        kids = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    s = f.read()
            except OSError:
                continue
            fields = s[s.rindex(")") + 2:].split()
            kids.setdefault(int(fields[1]), []).append((int(d), fields[0]))
        out, todo = [], [self.proc.pid]
        while todo:
            for pid, state in kids.get(todo.pop(), []):
                out.append((pid, state))
                todo.append(pid)
        return out

    def kill_descendants(self):
        for pid, _ in self.descendants():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def stop(self):
        self.kill_descendants()
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.conn:
            self.conn.close()
        if self.lsock:
            self.lsock.close()
        self.log.close()

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


def pid_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
        return s[s.rindex(")") + 2]
    except (OSError, ValueError, IndexError):
        return None


def pid_gone(pid, timeout=2.0, zombie_ok=False):
    """True once pid no longer exists (killed and reaped), or with
    zombie_ok once it is dead but reaped by someone not under test."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        st = pid_state(pid)
        if st is None or (zombie_ok and st == "Z"):
            return True
        time.sleep(0.02)
    return False


# ---------------------------------------------------------------------------
# tests: each takes the Agent (with a live connection) and the temp dir

def t_hello(ag, tmp):
    ver, maxp, win, name = ag.conn.hello
    check(ver == 2, "version %d" % ver)
    check(maxp == MAX_PAYLOAD, "max payload %d" % maxp)
    check(win == WINDOW0, "initial window %d" % win)
    check(name, "empty agent version")


def t_ping(ag, tmp):
    c = ag.conn
    c.ping(b"")
    c.ping(bytes(range(64)))
    c.send(PING, 0, b"x" * 65)
    e, _ = c.expect_error0()
    check(e == errno.EINVAL, "PING of 65 bytes: errno %d" % e)
    c.ping(b"still here")


def t_echo(ag, tmp):
    st = ag.conn.run(["echo", "hi"])
    expect_exit(st, 0, 0)
    check(st.pid and st.pid > 1, "pid %r" % st.pid)
    check(st.out == b"hi\n" and st.err == b"", "output %r %r" % (st.out, st.err))


def t_exit_code(ag, tmp):
    expect_exit(ag.conn.run(["sh", "-c", "exit 3"]), 0, 3)


def t_killed(ag, tmp):
    expect_exit(ag.conn.run(["sh", "-c", "kill -9 $$"]), 1, 9)


def t_stdout_10mib(ag, tmp):
    data = os.urandom(10 << 20)
    path = os.path.join(tmp, "big")
    with open(path, "wb") as f:
        f.write(data)
    st = ag.conn.run(["cat", path], timeout=60)
    expect_exit(st, 0, 0)
    check(len(st.out) == len(data), "got %d bytes" % len(st.out))
    check(hashlib.sha256(st.out).digest() == hashlib.sha256(data).digest(), "sha256 differs")


def t_stderr_separate(ag, tmp):
    st = ag.conn.run(["sh", "-c", "echo out; echo err >&2; echo out2; echo err2 >&2"])
    expect_exit(st, 0, 0)
    check(st.out == b"out\nout2\n", "stdout %r" % st.out)
    check(st.err == b"err\nerr2\n", "stderr %r" % st.err)


def t_both_streams_big(ag, tmp):
    path = os.path.join(tmp, "mixed")
    with open(path, "wb") as f:
        f.write(os.urandom(3 << 20))
    st = ag.conn.run(["sh", "-c", 'cat "$0" & cat "$0" >&2; wait', path], timeout=60)
    expect_exit(st, 0, 0)
    want = hashlib.sha256(open(path, "rb").read()).digest()
    check(hashlib.sha256(st.out).digest() == want, "stdout differs")
    check(hashlib.sha256(st.err).digest() == want, "stderr differs")


def t_stdin_sha256(ag, tmp):
    data = os.urandom((1 << 20) + 12345)  # several windows' worth
    st = ag.conn.run(["sha256sum"], stdin=data, timeout=30)
    expect_exit(st, 0, 0)
    want = hashlib.sha256(data).hexdigest().encode() + b"  -\n"
    check(st.out == want, "sha256sum said %r" % st.out)
    check(st.windows_rx >= len(data) - WINDOW0, "agent granted only %d" % st.windows_rx)


def t_stdin_cat_roundtrip(ag, tmp):
    data = os.urandom(700000)
    st = ag.conn.run(["cat"], stdin=data, timeout=30)
    expect_exit(st, 0, 0)
    check(st.out == data, "cat echoed %d bytes, not the %d sent" % (len(st.out), len(data)))


def t_stdin_devnull(ag, tmp):
    st = ag.conn.run(["sh", "-c", "cat; echo rc=$?"])
    expect_exit(st, 0, 0)
    check(st.out == b"rc=0\n", "without STDIN flag, stdin should be empty: %r" % st.out)


def t_timeout(ag, tmp):
    st = ag.conn.run(["sleep", "100"], timeout_ms=300, timeout=5)
    expect_exit(st, 1, 9, timed_out=1)
    el = st.t_end - st.t0
    check(el < 1.2, "timeout took %.2fs" % el)
    check(pid_gone(st.pid), "sleep still exists")


def t_timeout_group(ag, tmp):
    # the whole process group is killed, not only the direct child
    st = ag.conn.run(["sh", "-c", "sleep 100 & echo $!; wait"], timeout_ms=300, timeout=5)
    expect_exit(st, 1, 9, timed_out=1)
    check(pid_gone(int(st.out)), "background sleep survived the timeout")


def t_signal_term(ag, tmp):
    c = ag.conn
    st = c.start(["sleep", "100"])
    check(c.wait(lambda: st.pid is not None), "no EXEC_STARTED")
    c.send(SIGNAL, st.sid, struct.pack("<I", 15))
    check(c.wait(lambda: st.done, 3), "no EXIT after SIGTERM")
    expect_exit(st, 1, 15)


def t_signal_group(ag, tmp):
    c = ag.conn
    st = c.start(["sh", "-c", "sleep 100 & echo $!; wait"])
    check(c.wait(lambda: len(st.out) > 0), "no output")
    c.send(SIGNAL, st.sid, struct.pack("<I", 9))
    check(c.wait(lambda: st.done, 3), "no EXIT after SIGKILL")
    expect_exit(st, 1, 9)
    check(pid_gone(int(st.out)), "SIGNAL did not reach the background process")


def t_drain_without_credit(ag, tmp):
    # The command exits with its own output still in the pipe and no credit
    # left: that output is owed, so the stream stays open (no EXIT) until
    # the host grants credit, and then every byte arrives before EXIT.
    c = ag.conn
    st = c.start(["head", "-c", "300000", "/dev/zero"], auto_window=False)
    check(c.wait(lambda: len(st.out) == WINDOW0, 3), "initial window not used")
    check(not c.wait(lambda: st.done, 1.0), "EXIT sent while its output was still owed")
    c.window(st.sid, 300000)
    check(c.wait(lambda: st.done, 3), "no EXIT after credit")
    expect_exit(st, 0, 0)
    check(len(st.out) == 300000, "%d bytes, want 300000" % len(st.out))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def t_backpressure(ag, tmp):
    # A host that stops reading: the agent's queue toward it stays bounded
    # (it stops reading the pipes), and nothing is lost when reading resumes.
    c = ag.conn
    path = os.path.join(tmp, "bp")
    with open(path, "wb") as f:
        f.write(os.urandom(48 << 20))
    st = c.start(["cat", path], auto_window=False)
    check(c.wait(lambda: st.pid is not None), "no EXEC_STARTED")
    rss0 = rss_kib(ag.proc.pid)
    c.window(st.sid, 64 << 20)  # plenty of credit, but we do not read
    time.sleep(1.5)
    grown = rss_kib(ag.proc.pid) - rss0
    check(grown < 16 << 10, "agent grew by %d KiB while the host did not read" % grown)
    check(c.wait(lambda: st.done, 60), "no EXIT")
    expect_exit(st, 0, 0)
    want = hashlib.sha256(open(path, "rb").read()).digest()
    check(hashlib.sha256(st.out).digest() == want, "data differs (%d bytes)" % len(st.out))


def t_ping_flood(ag, tmp):
    # PINGs from a host that never reads PONGs: memory stays bounded.
    import threading
    c = ag.conn
    n = 150000  # ~11 MiB of PONG frames
    frame = HDR.pack(64, PING, 0, 0, 0) + b"p" * 64
    sent = []

    def sender():
        try:
            c.sock.sendall(frame * n)
            sent.append(True)
        except OSError:
            pass
    rss0 = rss_kib(ag.proc.pid)
    th = threading.Thread(target=sender, daemon=True)
    th.start()
    time.sleep(1.5)
    grown = rss_kib(ag.proc.pid) - rss0
    check(grown < 16 << 10, "agent grew by %d KiB under a PING flood" % grown)
    check(not sent, "agent swallowed the flood without backpressure?")
    n0 = len(c.pongs)
    check(c.wait(lambda: len(c.pongs) - n0 == n, 60), "got %d PONGs of %d" % (len(c.pongs) - n0, n))
    th.join(5)
    c.ping()


def t_drain_background(ag, tmp):
    st = ag.conn.run(["sh", "-c", "echo hi; sleep 600 &"], timeout=5)
    expect_exit(st, 0, 0)
    el = st.t_end - st.t0
    check(el < 2.0, "took %.2fs" % el)
    check(st.out == b"hi\n", "output %r" % st.out)


def t_enoent(ag, tmp):
    c = ag.conn
    for argv in (["no-such-command-xyzzy"], ["/nonexistent/bin/ls"]):
        st = c.run(argv)
        check(st.exit is None and st.pid is None, "%r started?" % argv)
        check(st.error and st.error[0] == errno.ENOENT, "%r: %r" % (argv, st.error))
        check(b"execve" in st.error[1] and b"No such file" in st.error[1], "message %r" % (st.error[1],))
    # PATH comes from the command's env
    st = c.run(["ls", "/"], env=[b"PATH=/nonexistent"])
    check(st.error and st.error[0] == errno.ENOENT, "ls with a bad PATH: %r" % (st.error,))
    st = c.run(["ls", "/"], env=[])
    expect_exit(st, 0, 0)  # default PATH


def t_chdir_and_eacces(ag, tmp):
    c = ag.conn
    st = c.run(["ls"], cwd="/nonexistent-dir")
    check(st.error and st.error[0] == errno.ENOENT and b"chdir" in st.error[1], "cwd: %r" % (st.error,))
    path = os.path.join(tmp, "notexec")
    with open(path, "w") as f:
        f.write("echo nope\n")
    os.chmod(path, 0o644)
    st = c.run([path])
    check(st.error and st.error[0] == errno.EACCES, "EACCES: %r" % (st.error,))
    # a script without #! runs through /bin/sh, as execvp does
    os.chmod(path, 0o755)
    with open(path, "w") as f:
        f.write("echo script-ok\n")
    st = c.run([path])
    expect_exit(st, 0, 0)
    check(st.out == b"script-ok\n", "script output %r" % st.out)


def t_env_cwd(ag, tmp):
    c = ag.conn
    st = c.run(["/usr/bin/env"], env=[b"A=1", b"B=two words", b"C="])
    expect_exit(st, 0, 0)
    check(st.out == b"A=1\nB=two words\nC=\n", "env %r" % st.out)
    st = c.run(["pwd"], cwd="/tmp")
    check(st.out == b"/tmp\n", "pwd %r" % st.out)
    st = c.run(["pwd"])
    check(st.out == b"/\n", "default cwd %r" % st.out)


def t_fds_closed(ag, tmp):
    st = ag.conn.run(["sh", "-c", "ls /proc/self/fd"])
    expect_exit(st, 0, 0)
    fds = sorted(int(x) for x in st.out.split())
    # 0,1,2 and the fd ls uses to read the directory
    check(len(fds) <= 4 and fds[:3] == [0, 1, 2], "child has fds %r" % fds)


def t_many_args(ag, tmp):
    args = ["a%d" % i for i in range(4000)]
    st = ag.conn.run(["sh", "-c", 'echo $#; echo "${4000}"', "sh"] + args)
    expect_exit(st, 0, 0)
    check(st.out == b"4000\na3999\n", "output %r" % st.out)


def t_concurrent(ag, tmp):
    c = ag.conn
    n = 64
    streams = []
    for i in range(n):
        script = 'i=0; while [ $i -lt 300 ]; do echo "s%d-$i"; i=$((i+1)); done; echo e%d >&2; exit %d' % (i, i, i)
        streams.append(c.start(["sh", "-c", script]))
    check(c.wait(lambda: all(s.done for s in streams), 60), "not all %d finished" % n)
    for i, s in enumerate(streams):
        expect_exit(s, 0, i)
        want = b"".join(b"s%d-%d\n" % (i, j) for j in range(300))
        check(s.out == want, "stream %d stdout wrong" % i)
        check(s.err == b"e%d\n" % i, "stream %d stderr %r" % (i, s.err))


def t_credit(ag, tmp):
    c = ag.conn
    total = 3 << 20
    st = c.start(["head", "-c", str(total), "/dev/zero"], auto_window=False)
    c.quiet(1.0)
    check(len(st.out) == WINDOW0, "sent %d bytes on a %d window" % (len(st.out), WINDOW0))
    check(not st.done, "finished without credit?")
    # other streams carry on while this one is blocked
    other = c.run(["echo", "independent"], timeout=5)
    expect_exit(other, 0, 0)
    c.window(st.sid, 100000)
    c.quiet(0.5)
    check(len(st.out) == WINDOW0 + 100000, "after WINDOW 100000: %d bytes" % len(st.out))
    st.auto_window = True
    c.window(st.sid, WINDOW0)
    check(c.wait(lambda: st.done, 30), "no EXIT after more credit")
    expect_exit(st, 0, 0)
    check(len(st.out) == total and st.out.count(0) == total, "got %d bytes" % len(st.out))


def t_orphans_reaped(ag, tmp):
    st = ag.conn.run(["sh", "-c", "sleep 0.2 & exit 0"], timeout=5)
    expect_exit(st, 0, 0)
    time.sleep(0.6)
    zombies = [p for p, s in ag.descendants() if s == "Z"]
    check(not zombies, "zombies left: %r" % zombies)


def t_disconnect_kills(ag, tmp):
    c = ag.conn
    st = c.start(["sleep", "100"])
    st2 = c.start(["sh", "-c", "sleep 100 & echo $!; wait"])
    check(c.wait(lambda: st.pid and len(st2.out) > 0), "not started")
    bg = int(st2.out)
    c.close()
    ag.conn = None
    ag.connect()
    check(pid_gone(st.pid) and pid_gone(st2.pid) and pid_gone(bg), "commands survived the disconnect")
    ag.conn.ping()


def t_bad_stream_frames(ag, tmp):
    c = ag.conn
    # STDIN without the STDIN flag: ERROR on the stream, command killed
    st = c.start(["sleep", "100"])
    check(c.wait(lambda: st.pid is not None), "no EXEC_STARTED")
    c.send(STDIN, st.sid, b"data")
    check(c.wait(lambda: st.done, 3) and st.error and st.error[0] == errno.EPROTO,
          "STDIN without flag: %r %r" % (st.error, st.exit))
    check(pid_gone(st.pid), "command not killed")
    # signal numbers outside 1..64
    for sig in (0, 65):
        st = c.start(["sleep", "100"])
        check(c.wait(lambda: st.pid is not None), "no EXEC_STARTED")
        c.send(SIGNAL, st.sid, struct.pack("<I", sig))
        check(c.wait(lambda: st.done, 3) and st.error and st.error[0] == errno.EINVAL,
              "SIGNAL %d: %r" % (sig, st.error))
    # malformed WINDOW payload
    st = c.start(["sleep", "100"])
    c.send(WINDOW, st.sid, b"\x01\x02")
    check(c.wait(lambda: st.done, 3) and st.error, "short WINDOW accepted")
    # duplicate STDIN_EOF
    st = c.start(["cat"], flags=F_STDIN)
    c.send(STDIN_EOF, st.sid)
    c.send(STDIN_EOF, st.sid)
    check(c.wait(lambda: st.done, 3), "no reply to a second STDIN_EOF")
    check(st.error and st.error[0] == errno.EPROTO, "second STDIN_EOF: %r %r" % (st.error, st.exit))
    c.ping()


def t_stdin_over_credit(ag, tmp):
    c = ag.conn
    st = c.start(["sleep", "100"], flags=F_STDIN)  # never reads stdin
    check(c.wait(lambda: st.pid is not None), "no EXEC_STARTED")
    for _ in range(4):
        c.send(STDIN, st.sid, b"x" * 65536)
    st.stdin_credit -= 4 * 65536
    c.quiet(0.5)  # the pipe takes what it can; the agent grants that back
    check(st.stdin_credit == st.windows_rx, "credit %d, granted %d" % (st.stdin_credit, st.windows_rx))
    left = st.stdin_credit
    while left:
        n = min(left, MAX_PAYLOAD)
        c.send(STDIN, st.sid, b"y" * n)
        left -= n
    c.send(STDIN, st.sid, b"z")  # one byte beyond the window
    check(c.wait(lambda: st.done, 3), "no reply to STDIN beyond credit")
    check(st.error and st.error[0] == errno.EPROTO, "over credit: %r" % (st.error,))
    check(pid_gone(st.pid), "command not killed")


def t_bad_exec_start(ag, tmp):
    c = ag.conn
    good = exec_start_payload(["true"])
    cases = {
        "argc 0": struct.pack("<IIII", 0, 0, 0, 0) + wstr(b""),
        "truncated": good[:-3],
        "trailing": good + b"\0",
        "env without =": exec_start_payload(["true"], env=[b"NOEQUALS"]),
        "env =x": exec_start_payload(["true"], env=[b"=x"]),
        "NUL in arg": exec_start_payload([b"tr\0ue"]),
        "unknown flag": exec_start_payload(["true"], flags=2),
        "argc huge": struct.pack("<IIII", 0, 0, 0xFFFFFFFF, 0) + wstr(b""),
        "empty": b"",
    }
    for name, payload in cases.items():
        st = Stream(c.next_sid, True)
        c.streams[st.sid] = st
        c.next_sid += 1
        c.send(EXEC_START, st.sid, payload)
        check(c.wait(lambda: st.done, 3), "%s: no reply" % name)
        check(st.error and st.error[0] == errno.EINVAL and st.exit is None,
              "%s: %r %r" % (name, st.error, st.exit))
    c.ping()
    expect_exit(c.run(["true"]), 0, 0)


def t_bad_control_frames(ag, tmp):
    c = ag.conn
    for t, sid, p in ((0x7F, 0, b""), (HELLO, 0, b""), (STDOUT, 0, b"x"),
                      (STDIN, 0, b"x"), (WINDOW, 999, struct.pack("<I", 1)),
                      (PING, 5, b""), (SHUTDOWN, 0, b"x"), (SIGNAL, 12345, b"\1\0\0\0")):
        c.send(t, sid, p)
        e, msg = c.expect_error0()
        check(e in (errno.EPROTO, errno.EINVAL), "type 0x%x stream %d: errno %d" % (t, sid, e))
        c.ping()


def t_late_frames_ignored(ag, tmp):
    c = ag.conn
    st = c.run(["true"])
    expect_exit(st, 0, 0)
    n0 = len(c.errors0)
    # the host had not seen EXIT yet when it sent these: no ERROR
    c.send(WINDOW, st.sid, struct.pack("<I", 4096))
    c.send(SIGNAL, st.sid, struct.pack("<I", 15))
    c.ping()
    check(len(c.errors0) == n0, "late frames answered with %r" % c.errors0[n0:])
    # but reusing a stream id is an error
    c.send(EXEC_START, st.sid, exec_start_payload(["true"]))
    e, _ = c.expect_error0()
    check(e == errno.EPROTO, "reused id: errno %d" % e)


def expect_reconnect(ag, what, must_close=True):
    """After garbage the agent must hang up (a bad header loses the framing)
    and keep serving the next connection. Garbage that happens to look like
    the start of a long frame leaves the agent waiting for the rest; then
    the harness hangs up itself. Either way the agent must survive."""
    c = ag.conn
    closed = False
    try:
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            c.next_frame(end - time.monotonic())
    except EOFError:
        closed = True
    except ProtocolError as e:
        raise Failure("%s: agent sent a bad frame: %s" % (what, e))
    check(closed or not must_close, "%s: connection not dropped" % what)
    check(ag.alive(), "agent died after %s" % what)
    ag.conn = None
    c.close()
    ag.connect()
    ag.conn.ping()
    return closed


def t_garbage_header(ag, tmp):
    ag.conn.send(PING, 0, b"", flags=1)
    expect_reconnect(ag, "non-zero flags")
    ag.conn.send_raw(HDR.pack(0, PING, 0, 7, 0))
    expect_reconnect(ag, "reserved bits")


def t_oversize(ag, tmp):
    st = ag.conn.start(["sleep", "100"])
    check(ag.conn.wait(lambda: st.pid is not None), "no EXEC_STARTED")
    ag.conn.send_raw(HDR.pack(MAX_PAYLOAD + 1, STDIN, 0, 0, 1) + b"x" * 100)
    expect_reconnect(ag, "oversize length")
    check(pid_gone(st.pid), "command survived the reset")
    ag.conn.send_raw(HDR.pack(0xFFFFFFFF, PING, 0, 0, 0))
    expect_reconnect(ag, "len 0xffffffff")


def t_random_garbage(ag, tmp):
    import random
    rnd = random.Random(1234)
    for i in range(20):
        data = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 3000)))
        try:
            ag.conn.send_raw(data)
        except OSError:
            pass
        expect_reconnect(ag, "random bytes #%d" % i, must_close=False)
    # and random but well-framed frames of every type
    for i in range(300):
        t = rnd.choice([PING, SHUTDOWN + 1, EXEC_STARTED, STDIN, STDIN_EOF, WINDOW, SIGNAL,
                        EXIT, 0x42, STDOUT])
        sid = rnd.choice([0, 1, 7, 100000 + i])
        p = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 80)))
        ag.conn.send(t, sid, p)
    ag.conn.quiet(0.5)
    for st in ag.conn.streams.values():
        if st.pid:
            ag.conn.send(SIGNAL, st.sid, struct.pack("<I", 9))
    ag.conn.ping()
    check(ag.alive(), "agent died")


def t_no_fd_leak(ag, tmp):
    fds = os.listdir("/proc/%d/fd" % ag.proc.pid)
    # 0-2, signalfd, the socket, 6 network listeners (ASan may add one or two)
    check(len(fds) <= 14, "agent holds %d fds: %r" % (len(fds), fds))


def t_listen_mode(ag, tmp):
    binary = ag.proc.args[0]
    la = Agent(binary, tmp, mode="--listen", name="listen")
    try:
        la.connect()
        expect_exit(la.conn.run(["echo", "via-listen"]), 0, 0)
        la.conn.close()
        la.conn = None
        la.connect()  # accepts the next connection
        la.conn.ping()
        la.conn.send(SHUTDOWN)
        la.proc.wait(5)
        check(la.proc.returncode == 0, "exit status %r" % la.proc.returncode)
    finally:
        la.stop()
    check_sanitizer_log(la)


def t_shutdown(ag, tmp):
    # Test mode's SHUTDOWN kills the commands it tracks, not the orphans
    # earlier tests left behind (as PID 1 it kills everything): do it here.
    ag.kill_descendants()
    st = ag.conn.start(["sleep", "100"])
    check(ag.conn.wait(lambda: st.pid is not None), "no EXEC_STARTED")
    ag.conn.send(SHUTDOWN)
    try:
        ag.proc.wait(5)
    except subprocess.TimeoutExpired:
        raise Failure("agent did not exit on SHUTDOWN")
    check(ag.proc.returncode == 0, "exit status %r" % ag.proc.returncode)
    # the agent is gone, so whoever adopts the dead child reaps it
    check(pid_gone(st.pid, zombie_ok=True), "command survived SHUTDOWN")


# ---------------------------------------------------------------------------
# network streams (test mode: the agent listens on the loopback ports in
# SANDBOX_AGENT_TEST_PORTS; without nftables a connection's original
# destination is the listener itself)

def free_ports(n):
    """n TCP+UDP ports free on both 127.0.0.1 and ::1."""
    out = []
    while len(out) < n:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        try:
            for fam, typ, host in ((socket.AF_INET6, socket.SOCK_STREAM, "::1"),
                                   (socket.AF_INET, socket.SOCK_DGRAM, "127.0.0.1"),
                                   (socket.AF_INET6, socket.SOCK_DGRAM, "::1")):
                t = socket.socket(fam, typ)
                try:
                    t.bind((host, port))
                finally:
                    t.close()
        except OSError:
            continue
        if port not in out:
            out.append(port)
    return out


class Upstream:
    """A threaded TCP server on 127.0.0.1 for the relay to connect to:
    mode "echo" echoes; "sink" reads to EOF and answers the sha256 and the
    length; "pattern" sends N bytes of a fixed pattern then closes."""

    def __init__(self, mode="echo", size=0):
        import threading
        self.mode, self.size = mode, size
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.addr = self.lsock.getsockname()
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        import threading
        while True:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._one, args=(s,), daemon=True).start()

    def _one(self, s):
        try:
            if self.mode == "echo":
                while True:
                    d = s.recv(1 << 16)
                    if not d:
                        break
                    s.sendall(d)
                s.shutdown(socket.SHUT_WR)
            elif self.mode == "sink":
                h, n = hashlib.sha256(), 0
                while True:
                    d = s.recv(1 << 16)
                    if not d:
                        break
                    h.update(d)
                    n += len(d)
                s.sendall(("%s %d\n" % (h.hexdigest(), n)).encode())
            else:
                s.sendall(pattern(self.size))
            s.close()
        except OSError:
            s.close()

    def close(self):
        self.lsock.close()


def pattern(n):
    block = hashlib.sha256(b"libsandbox").digest() * 2048  # 64 KiB
    return (block * (n // len(block) + 1))[:n]


def net_setup(ag, route=None, dns=None):
    check(ag.net_ports, "agent started without network ports")
    sim = NetSim(route, dns)
    ag.conn.sim = sim
    return sim


def guest_connect(ag, v6=False, rcvbuf=0):
    fam, host = (socket.AF_INET6, "::1") if v6 else (socket.AF_INET, "127.0.0.1")
    s = socket.socket(fam, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect((host, ag.net_ports[0]))
    return s


def recv_all(c, s, timeout=10.0):
    """Read s to EOF while serving the connection (the relay needs us)."""
    s.setblocking(False)
    out = bytearray()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            d = s.recv(1 << 16)
            if not d:
                return bytes(out)
            out += d
            continue
        except BlockingIOError:
            pass
        c.quiet(0.02)
    raise Failure("no EOF after %d bytes" % len(out))


def t_net_tcp_relay(ag, tmp):
    c = ag.conn
    up = Upstream("echo")
    sim = net_setup(ag, route=lambda st: up.addr)
    for v6 in (False, True):
        s = guest_connect(ag, v6)
        check(c.wait(lambda: len(sim.opened) == (2 if v6 else 1)), "no TCP_OPEN")
        st = sim.opened[-1]
        want = (6, "::1", ag.net_ports[0]) if v6 else (4, "127.0.0.1", ag.net_ports[0])
        check(st.dst == want, "TCP_OPEN %r, expected %r" % (st.dst, want))
        data = os.urandom(3 << 20)
        s.sendall(data[:1000])
        s.setblocking(False)
        got = bytearray()
        sent = 1000
        shut = False
        end = time.monotonic() + 30
        while len(got) < len(data) and time.monotonic() < end:
            if sent < len(data):
                try:
                    sent += s.send(data[sent:sent + 65536])
                except BlockingIOError:
                    pass
            elif not shut:
                s.shutdown(socket.SHUT_WR)
                shut = True
            try:
                d = s.recv(1 << 16)
                got += d
            except BlockingIOError:
                c.quiet(0.01)
        check(bytes(got) == data, "echo differs: %d of %d bytes" % (len(got), len(data)))
        rest = recv_all(c, s)
        check(rest == b"", "extra bytes %r" % rest[:20])
        check(c.wait(lambda: st.closed is not None), "stream not closed")
        check(st.closed == (CLOSE_GRACEFUL, R_DONE) and st.rx_eof, "close %r" % (st.closed,))
        s.close()
    up.close()
    c.ping()


def t_net_credit(ag, tmp):
    # The agent sends no more than the credit; a stream without credit
    # does not hold up another one.
    c = ag.conn
    sim = net_setup(ag, route=lambda st: None if st.sid else None)
    sim.on_open = lambda conn, st: sim.opened.append(st)  # hold, no upstream
    a = guest_connect(ag)
    check(c.wait(lambda: len(sim.opened) == 1), "no TCP_OPEN")
    sa = sim.opened[0]
    sa.auto_window = False
    a.setblocking(False)
    payload = b"a" * (1 << 20)
    off = 0
    end = time.monotonic() + 3
    while time.monotonic() < end:
        try:
            off += a.send(payload[off:off + 65536])
        except BlockingIOError:
            pass
        c.quiet(0.05)
    check(len(sa.rx) == WINDOW0, "received %d bytes with a %d window" % (len(sa.rx), WINDOW0))
    b = guest_connect(ag)
    check(c.wait(lambda: len(sim.opened) == 2), "second TCP_OPEN")
    b.sendall(b"independent")
    sb = sim.opened[1]
    check(c.wait(lambda: sb.rx == b"independent"), "second stream stalled: %r" % sb.rx)
    c.send(WINDOW, sa.sid, struct.pack("<I", 1000))
    sa.credit += 1000
    c.quiet(0.5)
    check(len(sa.rx) == WINDOW0 + 1000, "after WINDOW 1000: %d" % len(sa.rx))
    c.net_close(sa, CLOSE_ABORT, R_DONE)
    c.net_close(sb, CLOSE_ABORT, R_DONE)
    a.close()
    b.close()
    c.ping()


def t_net_slow_reader(ag, tmp):
    # A guest that does not read: the agent buffers at most the credit it
    # granted (it grants back only what the guest took), other streams go on.
    c = ag.conn
    sim = net_setup(ag)
    sim.on_open = lambda conn, st: sim.opened.append(st)
    slow = guest_connect(ag, rcvbuf=16384)
    check(c.wait(lambda: len(sim.opened) == 1), "no TCP_OPEN")
    st = sim.opened[0]
    rss0 = rss_kib(ag.proc.pid)
    total = 32 << 20
    c.tcp_send(st, b"z" * total)
    c.quiet(1.5)
    check(st.send_credit == 0 and len(st.pending) > 28 << 20,
          "host could send %d more, %d pending" % (st.send_credit, len(st.pending)))
    grown = rss_kib(ag.proc.pid) - rss0
    # (generous for ASan's allocator; without the bound it would be 32 MiB)
    check(grown < 16 << 10, "agent grew by %d KiB for a reader that does not read" % grown)
    fast = guest_connect(ag)
    check(c.wait(lambda: len(sim.opened) == 2), "second TCP_OPEN")
    c.tcp_send(sim.opened[1], b"hello", eof=True)
    fast.settimeout(5)
    check(fast.recv(100) == b"hello", "other stream stalled")
    # now read the slow one: everything arrives, in order
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    got = bytearray()
    slow.setblocking(False)
    end = time.monotonic() + 60
    while len(got) < total and time.monotonic() < end:
        try:
            got += slow.recv(1 << 20)
        except BlockingIOError:
            c.quiet(0.001)
    check(len(got) == total and got.count(b"z") == len(got), "slow reader got %d" % len(got))
    for x in list(sim.opened):
        c.net_close(x, CLOSE_ABORT, R_DONE)
    slow.close()
    fast.close()


def t_net_resets(ag, tmp):
    c = ag.conn
    sim = net_setup(ag)
    sim.on_open = lambda conn, st: sim.opened.append(st)
    # host abort -> the guest program sees a reset
    s = guest_connect(ag)
    check(c.wait(lambda: len(sim.opened) == 1), "no TCP_OPEN")
    c.tcp_send(sim.opened[0], b"partial")
    c.quiet(0.2)
    c.net_close(sim.opened[0], CLOSE_ABORT, R_POLICY)
    c.quiet(0.2)
    try:
        data = s.recv(100)
        data += s.recv(100)
        raise Failure("no reset after TCP_CLOSE abort (read %r)" % data)
    except ConnectionResetError:
        pass
    s.close()
    # guest reset -> TCP_CLOSE abort, reason reset
    s = guest_connect(ag)
    check(c.wait(lambda: len(sim.opened) == 2), "no TCP_OPEN")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    st = sim.opened[1]
    check(c.wait(lambda: st.closed is not None), "no TCP_CLOSE after a guest reset")
    check(st.closed == (CLOSE_ABORT, R_RESET), "close %r" % (st.closed,))
    # host graceful close: data, FIN, and the guest sees EOF
    s = guest_connect(ag)
    check(c.wait(lambda: len(sim.opened) == 3), "no TCP_OPEN")
    c.tcp_send(sim.opened[2], b"bye")
    c.net_close(sim.opened[2], CLOSE_GRACEFUL, R_DONE)
    check(recv_all(c, s) == b"bye", "graceful close lost data")
    s.close()
    c.ping()


def t_net_limit(ag, tmp):
    c = ag.conn
    sim = net_setup(ag)
    sim.on_open = lambda conn, st: sim.opened.append(st)
    socks = [guest_connect(ag) for _ in range(256)]
    check(c.wait(lambda: len(sim.opened) == 256, 20), "%d TCP_OPEN" % len(sim.opened))
    try:
        extra = guest_connect(ag)
        extra.settimeout(5)
        c.quiet(0.3)
        extra.recv(1)
        raise Failure("257th connection not reset")
    except (ConnectionResetError, BrokenPipeError):
        pass  # reset at once (possibly before connect() returned)
    check(len(sim.opened) == 256, "257th connection was forwarded")
    c.net_close(sim.opened[0], CLOSE_ABORT, R_DONE)
    c.ping()  # the agent has taken the TCP_CLOSE
    again = guest_connect(ag)
    check(c.wait(lambda: len(sim.opened) == 257), "no room after one closed")
    for x in list(sim.opened):
        c.net_close(x, CLOSE_ABORT, R_DONE)
    for x in socks + [again]:
        x.close()
    c.ping()


def dns_query(name, qtype=1, qid=0x1234):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack(">HH", qtype, 1)


def t_net_dns(ag, tmp):
    c = ag.conn
    ans = {1: [socket.inet_aton("203.0.113.7")]}
    sim = net_setup(ag, dns=lambda q: dns_answer(q.msg, ans) if b"drop" not in q.msg else b"")
    port = ag.net_ports[1]
    for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        u = socket.socket(fam, socket.SOCK_DGRAM)
        u.settimeout(0)
        q = dns_query("example.test")
        u.sendto(q, (host, port))
        check(c.wait(lambda: len(sim.queries) and sim.queries[-1].msg == q), "no DNS_QUERY")
        check(sim.queries[-1].transport == 0, "transport %d" % sim.queries[-1].transport)
        got = None
        end = time.monotonic() + 5
        while got is None and time.monotonic() < end:
            try:
                got = u.recv(4096)
            except BlockingIOError:
                c.quiet(0.02)
        check(got == dns_answer(q, ans), "UDP reply %r" % got)
        # an empty reply is a drop
        u.sendto(dns_query("drop.test"), (host, port))
        c.quiet(0.5)
        try:
            raise Failure("dropped query answered: %r" % u.recv(4096))
        except BlockingIOError:
            pass
        u.close()
    # TCP: several queries on one connection, length-prefixed
    t = socket.create_connection(("127.0.0.1", port), timeout=5)
    n0 = len(sim.queries)
    msgs = [dns_query("q%d.example.test" % i, qid=i) for i in range(5)]
    t.sendall(b"".join(struct.pack(">H", len(m)) + m for m in msgs))
    check(c.wait(lambda: len(sim.queries) == n0 + 5), "TCP queries: %d" % (len(sim.queries) - n0))
    check(all(q.transport == 1 for q in sim.queries[n0:]), "TCP transport")
    want = b"".join(struct.pack(">H", len(r)) + r for r in (dns_answer(m, ans) for m in msgs))
    t.setblocking(False)
    got = bytearray()
    end = time.monotonic() + 5
    while len(got) < len(want) and time.monotonic() < end:
        try:
            got += t.recv(65536)
        except BlockingIOError:
            c.quiet(0.02)
    check(bytes(got) == want, "TCP replies differ")
    t.close()
    c.ping()


def t_net_dns_limit(ag, tmp):
    # 64 outstanding queries at most; further ones are dropped
    c = ag.conn
    sim = net_setup(ag, dns=lambda q: None)  # never answers
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(80):
        u.sendto(dns_query("n%d.test" % i, qid=i), ("127.0.0.1", ag.net_ports[1]))
    c.quiet(1.0)
    check(len(sim.queries) == 64, "%d queries forwarded" % len(sim.queries))
    # answering one makes room for one more
    c.dns_reply(sim.queries[0], dns_answer(sim.queries[0].msg, {}))
    c.ping()  # the agent has taken the reply before the next query comes
    u.sendto(dns_query("late.test"), ("127.0.0.1", ag.net_ports[1]))
    check(c.wait(lambda: len(sim.queries) == 65), "no room after a reply")
    for q in sim.queries[1:]:
        c.dns_reply(q, b"")
    u.close()
    c.ping()


def t_net_bad_host_frames(ag, tmp):
    c = ag.conn
    sim = net_setup(ag)
    sim.on_open = lambda conn, st: sim.opened.append(st)
    # a guest that does not read: the agent cannot write (and grant) much
    s = guest_connect(ag, rcvbuf=4096)
    check(c.wait(lambda: len(sim.opened) == 1), "no TCP_OPEN")
    st = sim.opened[0]
    # fill the guest's socket and the agent's queue until no credit is left
    c.tcp_send(st, b"x" * (16 << 20))
    last, end = -1, time.monotonic() + 20
    while len(st.pending) != last and time.monotonic() < end:
        last = len(st.pending)  # the guest kernel's buffers take a while to fill
        c.quiet(0.5)
    check(st.send_credit == 0 and st.pending, "credit left: %d" % st.send_credit)
    # then one byte beyond the credit: ERROR on stream 0, the stream aborted
    st.pending.clear()
    st.send_credit -= 1
    c.send(TCP_DATA, st.sid, b"x")
    e, msg = c.expect_error0()
    check(e == errno.EPROTO and b"window" in msg, "over credit: %r" % ((e, msg),))
    check(c.wait(lambda: st.closed is not None), "stream not aborted")
    check(st.closed == (CLOSE_ABORT, R_ERROR), "close %r" % (st.closed,))
    s.close()
    # an id never opened: ERROR; an ended one: ignored
    c.send(TCP_DATA, AGENT_BIT | 0x7fff0000, b"x")
    e, _ = c.expect_error0()
    check(e == errno.EPROTO, "unknown id: %d" % e)
    n = len(c.errors0)
    c.send(WINDOW, st.sid, struct.pack("<I", 10))
    c.ping()
    check(len(c.errors0) == n, "late frame answered: %r" % c.errors0[n:])
    # malformed TCP_CLOSE on a live stream
    s = guest_connect(ag)
    check(c.wait(lambda: len(sim.opened) == 2), "no TCP_OPEN")
    c.send(TCP_CLOSE, sim.opened[1].sid, b"\x07\0\0\0")
    c.expect_error0()
    check(c.wait(lambda: sim.opened[1].closed is not None), "bad TCP_CLOSE not answered")
    s.close()
    c.ping()


def t_net_disconnect_resets(ag, tmp):
    c = ag.conn
    sim = net_setup(ag)
    sim.on_open = lambda conn, st: sim.opened.append(st)
    s = guest_connect(ag)
    check(c.wait(lambda: len(sim.opened) == 1), "no TCP_OPEN")
    c.close()
    ag.conn = None
    ag.connect()
    s.settimeout(5)
    try:
        d = s.recv(10)
        check(d == b"", "data after the host went away: %r" % d)
    except ConnectionResetError:
        pass
    s.close()
    # ids start again on the new connection
    sim = net_setup(ag)
    sim.on_open = lambda conn, st: sim.opened.append(st)
    s = guest_connect(ag)
    check(ag.conn.wait(lambda: len(sim.opened) == 1), "no TCP_OPEN after reconnect")
    check(sim.opened[0].sid == AGENT_BIT | 1, "first id 0x%08x" % sim.opened[0].sid)
    ag.conn.net_close(sim.opened[0], CLOSE_ABORT, R_DONE)
    s.close()


def t_net_exec_not_stalled(ag, tmp):
    # A bulk upload through a network stream while commands run: the
    # commands' frames are not queued behind the download.
    import threading
    c = ag.conn
    sink = Upstream("sink")
    sim = net_setup(ag, route=lambda st: sink.addr)
    total = 64 << 20
    result = {}

    def guest():
        try:
            s = guest_connect(ag)
            s.settimeout(60)
            block = pattern(1 << 20)
            for _ in range(total >> 20):
                s.sendall(block)
            s.shutdown(socket.SHUT_WR)
            result["reply"] = s.makefile("rb").read()
            s.close()
        except OSError as e:
            result["error"] = e

    th = threading.Thread(target=guest, daemon=True)
    th.start()
    check(c.wait(lambda: sim.opened and len(sim.opened[0].rx) > 4 << 20, 20), "upload not started")
    worst = 0.0
    runs = 0
    while th.is_alive() and runs < 50:
        t0 = time.monotonic()
        expect_exit(c.run(["echo", "x"], timeout=10), 0, 0)
        worst = max(worst, time.monotonic() - t0)
        runs += 1
    check(c.wait(lambda: not th.is_alive(), 60), "upload did not finish")
    th.join()
    want = "%s %d\n" % (hashlib.sha256(pattern(1 << 20) * (total >> 20)).hexdigest(), total)
    check(result.get("reply") == want.encode(), "upload: %r" % (result,))
    check(runs >= 3, "only %d commands ran during the upload" % runs)
    check(worst < 1.0, "a command took %.2fs during the upload" % worst)
    sink.close()


def t_net_dns_expiry(ag, tmp):
    # A query the host never answers is forgotten after 10 s: its slot is
    # free again, and a late reply for it is ignored (no ERROR, no datagram).
    c = ag.conn
    sim = net_setup(ag, dns=lambda q: None)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(0)
    for i in range(64):
        u.sendto(dns_query("e%d.test" % i, qid=i), ("127.0.0.1", ag.net_ports[1]))
    check(c.wait(lambda: len(sim.queries) == 64, 5), "%d queries" % len(sim.queries))
    u.sendto(dns_query("full.test"), ("127.0.0.1", ag.net_ports[1]))
    c.quiet(0.5)
    check(len(sim.queries) == 64, "65th query forwarded while 64 were outstanding")
    c.quiet(10.0)
    u.sendto(dns_query("after.test"), ("127.0.0.1", ag.net_ports[1]))
    check(c.wait(lambda: len(sim.queries) == 65, 5), "no room after 10 s")
    n = len(c.errors0)
    c.dns_reply(sim.queries[0], dns_answer(sim.queries[0].msg, {}))
    c.ping()
    check(len(c.errors0) == n, "late reply answered with ERROR: %r" % c.errors0[n:])
    try:
        raise Failure("late reply delivered: %r" % u.recv(4096))
    except BlockingIOError:
        pass
    c.dns_reply(sim.queries[64], b"")
    u.close()


NET_TESTS = [t_net_tcp_relay, t_net_credit, t_net_slow_reader, t_net_resets, t_net_limit,
             t_net_dns, t_net_dns_limit, t_net_bad_host_frames, t_net_disconnect_resets,
             t_net_exec_not_stalled, t_net_dns_expiry]
def put_file(conn, path, data, mode=0o644, flags=0):
    fs = conn.fopen(FOP_PUT, path, flags)
    conn.fsend(fs, FILE_ENTRY, entry_payload(FT_FILE, b"", mode, len(data)))
    for i in range(0, len(data), MAX_PAYLOAD):
        if not conn.fsend(fs, FILE_DATA, data[i:i + MAX_PAYLOAD]):
            break
    if not fs.done:
        conn.send(FILE_END, fs.sid)
    return conn.fwait(fs)


def t_file_put_get_tree(ag, tmp):
    c = ag.conn
    root = os.path.join(tmp, "ft", "tree")
    big = os.urandom(700 * 1024)
    fs = c.fopen(FOP_PUT, root, FOP_F_PARENTS)
    c.fsend(fs, FILE_ENTRY, entry_payload(FT_DIR, b"", 0o750))
    c.fsend(fs, FILE_ENTRY, entry_payload(FT_FILE, b"big.bin", 0o600, len(big)))
    for i in range(0, len(big), MAX_PAYLOAD):
        c.fsend(fs, FILE_DATA, big[i:i + MAX_PAYLOAD])
    c.fsend(fs, FILE_ENTRY, entry_payload(FT_DIR, b"sub", 0o755))
    c.fsend(fs, FILE_ENTRY, entry_payload(FT_FILE, b"sub/empty", 0o644))
    c.fsend(fs, FILE_ENTRY, entry_payload(FT_SYMLINK, b"sub/link", 0o777, 0, b"../big.bin"))
    c.send(FILE_END, fs.sid)
    c.fwait(fs)
    check(fs.ended and fs.error is None, "PUT failed: %r" % (fs.error,))
    with open(os.path.join(root, "big.bin"), "rb") as f:
        check(f.read() == big, "uploaded bytes differ")
    check(os.stat(root).st_mode & 0o777 == 0o750, "directory mode")
    check(os.readlink(os.path.join(root, "sub/link")) == "../big.bin", "symlink")
    g = c.fwait(c.fopen(FOP_GET, root))
    check(g.ended, "GET failed: %r" % (g.error,))
    check(g.entries[0]["name"] == b"" and g.entries[0]["type"] == FT_DIR, "root entry")
    byname = {e["name"]: e for e in g.entries[1:]}
    check(set(byname) == {b"big.bin", b"sub", b"sub/empty", b"sub/link"}, "names %r" % byname)
    check(bytes(byname[b"big.bin"]["data"]) == big, "downloaded bytes differ")
    check(byname[b"sub/link"]["target"] == b"../big.bin", "symlink target")
    names = [e["name"] for e in g.entries]
    check(names.index(b"sub") < names.index(b"sub/empty"), "parent after child")


def t_file_get_respects_credit(ag, tmp):
    c = ag.conn
    path = os.path.join(tmp, "credit.bin")
    with open(path, "wb") as f:
        f.write(os.urandom(2 << 20))
    g = c.fopen(FOP_GET, path, FOP_F_REGULAR, auto_window=False)
    c.quiet(0.5)
    check(not g.done and g.received <= WINDOW0, "agent sent %d bytes past credit" % g.received)
    while not g.done:
        c.send(WINDOW, g.sid, struct.pack("<I", WINDOW0))
        g.credit += WINDOW0
        c.wait(lambda: g.done or g.credit < FILE_COST + 1024, 5.0)
    check(g.ended and g.received == 2 << 20, "got %d bytes, %r" % (g.received, g.error))


def t_file_ops_and_errors(ag, tmp):
    c = ag.conn
    d = os.path.join(tmp, "fops")
    check(c.fwait(c.fopen(FOP_MKDIR, d + "/a/b", FOP_F_PARENTS, 0o700)).ended, "mkdir -p")
    check(os.stat(d + "/a/b").st_mode & 0o777 == 0o700, "mkdir mode")
    e = c.fwait(c.fopen(FOP_MKDIR, d + "/a/b", 0, 0o700))
    check(e.error and e.error[0] == errno.EEXIST, "mkdir existing: %r" % (e.error,))
    check(put_file(c, d + "/a/b/f", b"12345").ended, "put")
    st = c.fwait(c.fopen(FOP_STAT, d + "/a/b/f"))
    check(st.ended and st.entries[0]["size"] == 5 and st.entries[0]["type"] == FT_FILE, "stat")
    ls = c.fwait(c.fopen(FOP_LIST, d + "/a"))
    check([x["name"] for x in ls.entries] == [b"b"], "list")
    e = c.fwait(c.fopen(FOP_REMOVE, d + "/a"))
    check(e.error and e.error[0] == errno.ENOTEMPTY, "rmdir non-empty: %r" % (e.error,))
    check(c.fwait(c.fopen(FOP_REMOVE, d + "/a", FOP_F_RECURSIVE)).ended, "rm -r")
    check(not os.path.exists(d + "/a"), "still there")
    e = c.fwait(c.fopen(FOP_GET, d + "/missing"))
    check(e.error and e.error[0] == errno.ENOENT, "get missing: %r" % (e.error,))
    e = c.fwait(c.fopen(FOP_GET, d, FOP_F_REGULAR))
    check(e.error and e.error[0] == errno.EISDIR, "get dir as file: %r" % (e.error,))
    os.mkfifo(d + "/fifo")
    e = put_file(c, d + "/fifo", b"x")
    check(e.error is not None, "a PUT onto a fifo must fail, not block")
    c.ping()


def t_file_bad_frames(ag, tmp):
    c = ag.conn
    sid = c.next_sid
    c.next_sid += 1
    c.fstreams[sid] = fs = FStream(sid, True)
    c.send(FILE_OP, sid, b"\x01\x02")
    c.fwait(fs)
    check(fs.error and fs.error[0] == errno.EINVAL, "malformed FILE_OP: %r" % (fs.error,))
    fs = c.fopen(FOP_PUT, os.path.join(tmp, "bad"))
    c.send(FILE_DATA, fs.sid, b"data before entry")
    c.fwait(fs)
    check(fs.error is not None, "DATA before ENTRY accepted")
    # late frames for the ended stream are ignored, not errors on stream 0
    c.send(FILE_DATA, fs.sid, b"late")
    c.send(FILE_END, fs.sid)
    c.send(WINDOW, fs.sid, struct.pack("<I", 100))
    path = os.path.join(tmp, "cancel.bin")
    with open(path, "wb") as f:
        f.write(b"\0" * (4 << 20))
    g = c.fopen(FOP_GET, path, auto_window=False)
    c.send(FILE_CANCEL, g.sid)
    c.fwait(g)
    check(g.error and g.error[0] == errno.ECANCELED, "cancel: %r" % (g.error,))
    e = c.fopen(FOP_PUT, os.path.join(tmp, "badname"))
    c.fsend(e, FILE_ENTRY, entry_payload(FT_DIR, b""))
    c.fsend(e, FILE_ENTRY, entry_payload(FT_FILE, b"../escape"))
    c.fwait(e)
    check(e.error and e.error[0] == errno.EINVAL, "'..' in a PUT name: %r" % (e.error,))
    check(not os.path.exists(os.path.join(tmp, "escape")), "escaped")
    n = len(c.errors0)
    c.ping()
    check(len(c.errors0) == n, "stream-0 errors: %r" % c.errors0[n:])


TESTS = [
    t_hello, t_ping, t_echo, t_exit_code, t_killed, t_stdout_10mib, t_stderr_separate,
    t_both_streams_big, t_stdin_sha256, t_stdin_cat_roundtrip, t_stdin_devnull, t_timeout,
    t_timeout_group, t_signal_term, t_signal_group, t_drain_background,
    t_drain_without_credit, t_enoent, t_chdir_and_eacces, t_env_cwd, t_fds_closed,
    t_many_args, t_concurrent, t_credit, t_orphans_reaped, t_disconnect_kills,
    t_bad_stream_frames, t_stdin_over_credit, t_bad_exec_start, t_bad_control_frames,
    t_late_frames_ignored, t_garbage_header, t_oversize, t_random_garbage, t_backpressure,
    t_ping_flood, t_file_put_get_tree, t_file_get_respects_credit, t_file_ops_and_errors,
    t_file_bad_frames] + NET_TESTS + [t_no_fd_leak, t_listen_mode, t_shutdown]

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehavior")


def check_sanitizer_log(ag):
    text = ag.log_text()
    bad = [m for m in SANITIZER_MARKS if m in text]
    check(not bad, "sanitizer report in the agent's log:\n" + text[-4000:])


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "./sandbox-agent")
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="sbx-agent-test-") as tmp:
        ag = Agent(binary, tmp, net_ports=tuple(free_ports(2)))
        try:
            ag.connect()
            for t in TESTS:
                name = t.__name__[2:]
                t0 = time.monotonic()
                try:
                    if ag.conn is None or not ag.alive():
                        raise Failure("agent not running")
                    t(ag, tmp)
                    if t is not t_shutdown:
                        check(ag.alive(), "agent died")
                    passed += 1
                    print("ok   %-22s %.2fs" % (name, time.monotonic() - t0), flush=True)
                except Exception as e:  # report and go on with a fresh connection
                    failed += 1
                    print("FAIL %-22s %s" % (name, e), flush=True)
                    if not isinstance(e, Failure):
                        traceback.print_exc()
                    if ag.alive() and t is not t_shutdown:
                        try:
                            if ag.conn:
                                ag.conn.close()
                            ag.conn = None
                            ag.connect()
                        except Exception as e2:
                            print("     cannot reconnect: %s" % e2)
                            break
        finally:
            ag.stop()
        try:
            check_sanitizer_log(ag)
            passed += 1
            print("ok   sanitizer-log")
        except Failure as e:
            failed += 1
            print("FAIL sanitizer-log %s" % e)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
