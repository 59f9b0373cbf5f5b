#!/bin/bash
# shellcheck disable=SC2317 # check functions are called through `check`
# Self-test of the test network, from the host's (root) namespace with real
# clients (dig, curl, python3): DNS over UDP and TCP, v4 and v6, the query
# log, HTTP and HTTPS endpoints, the bad certificates, large transfers,
# concurrency and a stalled reader. Needs `tests/net/testnet.sh up` first;
# fails loudly (never skips) when the network is down or we are not root.
# Ends with "N passed, N failed".
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=env.sh
. "$HERE/env.sh"
PY=/usr/bin/python3
export PYTHONDONTWRITEBYTECODE=1 # never write into the source tree
CA=$TESTNET_CA
passed=0
failed=0
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# check NAME COMMAND...: one named check, PASS or FAIL with its output
check() {
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then
		echo "PASS: $name"
		passed=$((passed + 1))
	else
		echo "FAIL: $name"
		printf '%s\n' "$out" | tail -n 15 | sed 's/^/    /'
		failed=$((failed + 1))
	fi
}
fail() {
	echo "$*" >&2
	return 1
}
finish() {
	echo "$passed passed, $failed failed"
	[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
	exit $?
}

if [ "$(id -u)" != 0 ]; then
	echo "FAIL: tests/net/selftest.sh must run as root (the test network needs it)"
	failed=1
	finish
fi
if ! bash "$HERE/testnet.sh" status; then
	echo "FAIL: the test network is not up: run tests/net/testnet.sh up (as root) first"
	failed=1
	finish
fi

CURL=(curl -sS --max-time 60 --noproxy '*')
resolve() { # name addr port -> curl --resolve argument
	case $2 in *:*) echo "$1:$3:[$2]" ;; *) echo "$1:$3:$2" ;; esac
}
# json FILE EXPR: evaluate a python expression over the parsed JSON file `d`
json() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); v=eval("(" + sys.argv[2] + ")"); print(v); sys.exit(0 if v else 1)' "$@"; }
pattern_sha256() {
	"$PY" -c '
import hashlib, sys
n = int(sys.argv[1]); block = bytes(range(251)) * 8192
h = hashlib.sha256(); off = 0
while off < n:
    k = min(n - off, len(block)); h.update(block[:k]); off += k
print(h.hexdigest())' "$1"
}

# ------------------------------------------------------------ consistency
consistent_constants() {
	local bad=0 name value hv
	while read -r name value; do
		hv=$(sed -n "s/^#define $name \(\"[^\"]*\"\|[0-9][0-9]*\)\( .*\)\?\$/\1/p" \
			"$HERE/testnet.h" | tr -d '"')
		[ -z "$hv" ] && continue
		[ "$hv" = "$value" ] || {
			echo "$name: env.sh $value, testnet.h $hv"
			bad=1
		}
	done < <(env | sed -n 's/^\(TESTNET_[A-Z0-9_]*\)=\(.*\)$/\1 \2/p')
	while read -r name; do
		case $name in *_NAME) continue ;; esac
		[ -n "${!name:-}" ] || {
			echo "$name in testnet.h, not in env.sh"
			bad=1
		}
	done < <(sed -n 's/^#define \(TESTNET_[A-Z0-9_]*\) ["0-9].*/\1/p' "$HERE/testnet.h")
	return "$bad"
}
check "env.sh and testnet.h agree" consistent_constants

# name type expected-answer, for every zone record, via dig over UDP (v4)
# and TCP (v6)
zone_answers() {
	local proto=$1 server=$2 bad=0 name type value got
	while read -r name type value; do
		case $name in \*.*) name="w$RANDOM.${name#\*.}" ;; esac
		got=$(dig +time=2 +tries=2 "$proto" +short @"$server" "$name" "$type")
		[ "$got" = "$value" ] || {
			echo "$name $type: got '$got', want '$value'"
			bad=1
		}
	done < <(sed 's/#.*//' "$HERE/zone" | awk 'NF == 3' | sort -k1,2 -u)
	return "$bad"
}
check "every zone record over UDP to $TESTNET_DNS4" zone_answers +notcp "$TESTNET_DNS4"
check "every zone record over TCP to [$TESTNET_DNS6]" zone_answers +tcp "$TESTNET_DNS6"

names_match_env() {
	local bad=0 pair
	for pair in example.test/EXAMPLE4 api.example.test/API4 a.example.test/A4 \
		other.test/OTHER4 front.example.test/FRONT4 dual.example.test/DUAL4 \
		api.files.example.test/FILES4 x.files.example.test/FILES4 \
		expired.example.test/EXPIRED4 selfsigned.example.test/SELFSIGNED4 \
		wrongname.example.test/WRONGNAME4 q.notallowed.test/NOTALLOWED4; do
		local var=TESTNET_${pair#*/} got
		got=$(dig +short @"$TESTNET_DNS4" "${pair%/*}" A)
		[ "$got" = "${!var}" ] || {
			echo "${pair%/*}: $got, env $var=${!var}"
			bad=1
		}
	done
	[ "$(dig +short @"$TESTNET_DNS4" v6.example.test AAAA)" = "$TESTNET_V6" ] || bad=1
	[ "$(dig +short @"$TESTNET_DNS4" dual.example.test AAAA)" = "$TESTNET_DUAL6" ] || bad=1
	return "$bad"
}
check "names resolve to the addresses env.sh names" names_match_env

dns_status() { # want-status dig-args...
	local want=$1
	shift
	dig +time=2 +tries=2 "$@" | grep -q "status: $want" || fail "$*: not $want"
}
check "unknown name: NXDOMAIN" dns_status NXDOMAIN @"$TESTNET_DNS4" nothing-here.example.test A
check "wildcard apex notallowed.test: NXDOMAIN" dns_status NXDOMAIN @"$TESTNET_DNS4" notallowed.test A
check "unknown TLD over TCP v6: NXDOMAIN" dns_status NXDOMAIN +tcp @"$TESTNET_DNS6" x.invalid A
nodata() {
	dns_status NOERROR @"$TESTNET_DNS4" example.test AAAA &&
		[ -z "$(dig +short @"$TESTNET_DNS4" example.test AAAA)" ]
}
check "existing name, other type: empty NOERROR" nodata
check "names are case-insensitive" \
	bash -c "[ \"\$(dig +short @$TESTNET_DNS4 API.Example.TEST A)\" = $TESTNET_API4 ]"

query_log() {
	local name="log$RANDOM$RANDOM.notallowed.test" mark lines
	mark=$(stat -c %s "$TESTNET_DNS_LOG")
	dig +short @"$TESTNET_DNS4" "$name" A >/dev/null
	dig +short +tcp @"$TESTNET_DNS6" "$name" AAAA >/dev/null
	lines=$(tail -c +$((mark + 1)) "$TESTNET_DNS_LOG" | grep " $name ")
	echo "$lines"
	[ "$(echo "$lines" | wc -l)" = 2 ] &&
		echo "$lines" | grep -q "^[0-9.]* udp $TESTNET_HOST4 [0-9]* $name A NOERROR\$" &&
		echo "$lines" | grep -q "^[0-9.]* tcp $TESTNET_HOST6 [0-9]* $name AAAA NOERROR\$"
}
check "query log: one line a query, client, name, type, rcode" query_log

# ------------------------------------------------------------------- HTTP
echo_http() {
	"${CURL[@]}" -o "$TMP/e.json" "http://$TESTNET_API4/echo?a=1&b=2" \
		-H 'Host: api.example.test' -H 'X-One: 1' -H 'X-One: 2' -d 'hello' &&
		json "$TMP/e.json" 'd["method"]=="POST" and d["path"]=="/echo?a=1&b=2"
and d["body"]=="hello" and d["body_length"]==5
and d["body_sha256"]=="2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
and ["X-One","1"] in d["headers"] and ["X-One","2"] in d["headers"]
and d["local_addr"]=="'"$TESTNET_API4"'" and d["local_port"]==80
and d["client_addr"]=="'"$TESTNET_HOST4"'" and d["tls"] is False and d["sni"] is None'
}
check "HTTP /echo reports method, target, headers, body, addresses" echo_http

echo_https() {
	"${CURL[@]}" --cacert "$CA" --resolve "$(resolve api.example.test "$TESTNET_API4" 8443)" \
		-o "$TMP/e.json" "https://api.example.test:8443/echo" &&
		json "$TMP/e.json" 'd["tls"] and d["sni"]=="api.example.test"
and d["tls_version"]=="TLSv1.3" and d["alpn"]=="http/1.1" and d["local_port"]==8443' &&
		"${CURL[@]}" --cacert "$CA" --tlsv1.2 --tls-max 1.2 \
			--resolve "$(resolve a.example.test "$TESTNET_A4" 443)" \
			-o "$TMP/e.json" "https://a.example.test/echo" &&
		json "$TMP/e.json" 'd["tls_version"]=="TLSv1.2" and d["sni"]=="a.example.test"'
}
check "HTTPS /echo with the test CA: SNI, TLS 1.3 and 1.2, ALPN" echo_https

literal_ip_https() {
	"${CURL[@]}" --cacert "$CA" "https://$TESTNET_LITERAL4/" | grep -q "sbx-testnet $TESTNET_LITERAL4 port 443" &&
		"${CURL[@]}" --cacert "$CA" "https://$TESTNET_EXTRA4:8443/" | grep -q "port 8443"
}
check "HTTPS to literal IPs (IP SANs)" literal_ip_https

v6() {
	"${CURL[@]}" -o "$TMP/e.json" "http://[$TESTNET_V6]:8080/echo" &&
		json "$TMP/e.json" 'd["local_addr"]=="'"$TESTNET_V6"'" and d["client_addr"]=="'"$TESTNET_HOST6"'"' &&
		"${CURL[@]}" --cacert "$CA" --resolve "$(resolve v6.example.test "$TESTNET_V6" 443)" \
			-o "$TMP/e.json" "https://v6.example.test/echo" &&
		json "$TMP/e.json" 'd["sni"]=="v6.example.test"' &&
		"${CURL[@]}" --cacert "$CA" --resolve "$(resolve dual.example.test "$TESTNET_DUAL6" 443)" \
			"https://dual.example.test/" | grep -q "$TESTNET_DUAL6"
}
check "IPv6: HTTP and HTTPS" v6

bad_cert() { # name addr curl-error-text
	local out
	out=$("${CURL[@]}" --cacert "$CA" --resolve "$(resolve "$1" "$2" 443)" "https://$1/" 2>&1) &&
		fail "$1: accepted"
	echo "$out" | grep -q "$3" || fail "$1: $out"
	# served, just not trusted: with verification off it answers
	"${CURL[@]}" -k --resolve "$(resolve "$1" "$2" 443)" "https://$1/" | grep -q sbx-testnet
}
check "expired.example.test: certificate has expired" \
	bad_cert expired.example.test "$TESTNET_EXPIRED4" "expired"
check "selfsigned.example.test: self-signed certificate" \
	bad_cert selfsigned.example.test "$TESTNET_SELFSIGNED4" "self-signed\|self signed"
check "wrongname.example.test: name mismatch" \
	bad_cert wrongname.example.test "$TESTNET_WRONGNAME4" "subject name\|does not match"
bad_cert_without_sni() {
	local out
	out=$(openssl s_client -connect "$TESTNET_EXPIRED4:443" -noservername -CAfile "$CA" \
		-verify_return_error </dev/null 2>&1) && fail "accepted"
	echo "$out" | grep -q "certificate has expired" || fail "$out"
}
check "no SNI: the certificate of the address (expired)" bad_cert_without_sni

bytes() { # url curl-args...
	local url=$1 n want got
	shift
	n=104857600
	want=$(pattern_sha256 "$n")
	got=$("${CURL[@]}" "$@" "$url/bytes/$n" | sha256sum | cut -d' ' -f1)
	[ "$got" = "$want" ] || fail "sha256 $got, want $want"
}
check "100 MiB /bytes over HTTP, sha256" bytes "http://$TESTNET_EXAMPLE4"
check "100 MiB /bytes over HTTPS, sha256" bytes "https://example.test" --cacert "$CA" \
	--resolve "$(resolve example.test "$TESTNET_EXAMPLE4" 443)"
chunked_bytes() {
	local want got
	want=$(pattern_sha256 5000000)
	got=$("${CURL[@]}" -D "$TMP/h" "http://$TESTNET_EXAMPLE4/bytes/5000000?chunked=1" | sha256sum | cut -d' ' -f1)
	grep -qi '^transfer-encoding: chunked' "$TMP/h" && [ "$got" = "$want" ]
}
check "/bytes/N?chunked=1: chunked response, same bytes" chunked_bytes

head_bytes() {
	"${CURL[@]}" -I "http://$TESTNET_EXAMPLE4/bytes/12345" >"$TMP/h" &&
		grep -q '^Content-Length: 12345' "$TMP/h" && grep -q '^HTTP/1.1 200' "$TMP/h" &&
		"${CURL[@]}" -I "http://$TESTNET_EXAMPLE4/echo" | grep -q '^Content-Length: [1-9]'
}
check "HEAD: headers with the length, no body" head_bytes

upload() { # size curl-args...
	local size=$1
	shift
	head -c "$size" /dev/urandom >"$TMP/up"
	local want
	want=$(sha256sum "$TMP/up" | cut -d' ' -f1)
	"${CURL[@]}" "$@" --data-binary @"$TMP/up" -o "$TMP/r.json" &&
		json "$TMP/r.json" 'd["sha256"]=="'"$want"'" and d["length"]=='"$size"
}
check "POST /sha256 150 KB, Content-Length" upload 153600 "http://$TESTNET_FILES4/sha256"
check "POST /sha256 10 MiB, chunked, HTTPS" upload 10485760 -H 'Transfer-Encoding: chunked' \
	--cacert "$CA" --resolve "$(resolve api.files.example.test "$TESTNET_FILES4" 443)" \
	"https://api.files.example.test/sha256"
check "POST /sha256 100 MiB" upload 104857600 "http://$TESTNET_FILES4:8080/sha256"

expect_continue() {
	head -c 2000000 /dev/zero >"$TMP/z"
	"${CURL[@]}" -v -H 'Expect: 100-continue' --data-binary @"$TMP/z" \
		"http://$TESTNET_EXAMPLE4/sha256" 2>"$TMP/v" >"$TMP/r.json" &&
		grep -q '^< HTTP/1.1 100 Continue' "$TMP/v" && json "$TMP/r.json" 'd["length"]==2000000'
}
check "Expect: 100-continue gets 100 Continue" expect_continue

keepalive() {
	"${CURL[@]}" -v -o "$TMP/1.json" "http://$TESTNET_EXAMPLE4/echo" -o "$TMP/2.json" \
		"http://$TESTNET_EXAMPLE4/echo" 2>"$TMP/v" &&
		grep -q 'Re-using existing connection' "$TMP/v" &&
		json "$TMP/2.json" 'd["request_on_connection"]==2'
}
check "keep-alive: two requests, one connection" keepalive

pipelining_http10() {
	"$PY" - "$TESTNET_EXAMPLE4" <<'EOF'
import socket, sys
s = socket.create_connection((sys.argv[1], 80), timeout=10)
s.sendall(b"GET /status/201 HTTP/1.1\r\nHost: x\r\n\r\nGET /bytes/5 HTTP/1.1\r\nHost: x\r\n\r\n"
          b"GET /status/202 HTTP/1.0\r\n\r\n")
data = b""
while True:
    c = s.recv(65536)
    if not c:
        break
    data += c
assert data.count(b"HTTP/1.1 20") == 3, data
assert data.index(b" 201 ") < data.index(b" 200 ") < data.index(b" 202 "), data
assert data.endswith(b"status 202\n"), data
EOF
}
check "pipelined requests answered in order; HTTP/1.0 closes" pipelining_http10

headers_echo() {
	"${CURL[@]}" -D "$TMP/h" -H 'Authorization: Bearer sk-test-123' \
		"http://$TESTNET_API4/headers-echo" >"$TMP/b" &&
		grep -q '^X-Echo-Authorization: Bearer sk-test-123' "$TMP/h" &&
		grep -qx 'Bearer sk-test-123' "$TMP/b" &&
		"${CURL[@]}" -D "$TMP/h" -H 'Authorization: Bearer sk-test-123' \
			"http://$TESTNET_API4/headers-echo?gzip=1" >"$TMP/b.gz" &&
		grep -qi '^Content-Encoding: gzip' "$TMP/h" && ! grep -q sk-test "$TMP/b.gz" &&
		[ "$(gzip -dc <"$TMP/b.gz")" = "Bearer sk-test-123" ]
}
check "/headers-echo: Authorization in a header and the body (also gzipped)" headers_echo

status() {
	[ "$("${CURL[@]}" -o /dev/null -w '%{http_code}' "http://$TESTNET_API4/status/404")" = 404 ] &&
		[ "$("${CURL[@]}" -o /dev/null -w '%{http_code}' "http://$TESTNET_API4/status/204")" = 204 ] &&
		[ "$("${CURL[@]}" -o /dev/null -w '%{http_code}' "http://$TESTNET_API4/nope")" = 404 ]
}
check "/status/N" status

websocket() {
	"$PY" - "$TESTNET_EXAMPLE4" "$CA" <<'EOF'
import base64, hashlib, os, socket, ssl, struct, sys
addr, ca = sys.argv[1], sys.argv[2]

def frame(op, payload):
    mask = os.urandom(4)
    n = len(payload)
    head = struct.pack("!B", 0x80 | op)
    head += struct.pack("!B", 0x80 | n) if n < 126 else struct.pack("!BH", 0xFE, n) if n < 65536 else struct.pack("!BQ", 0xFF, n)
    return head + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))

def read(f):
    b0, b1 = f.read(2)
    n = b1 & 0x7F
    if n == 126: n = struct.unpack("!H", f.read(2))[0]
    elif n == 127: n = struct.unpack("!Q", f.read(8))[0]
    return b0 & 0x0F, f.read(n)

for tls in (False, True):
    s = socket.create_connection((addr, 443 if tls else 80), timeout=10)
    if tls:
        ctx = ssl.create_default_context(cafile=ca)
        s = ctx.wrap_socket(s, server_hostname="example.test")
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /ws HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
    f = s.makefile("rb")
    status = f.readline()
    assert status.startswith(b"HTTP/1.1 101"), status
    headers = {}
    while True:
        l = f.readline()
        if l in (b"\r\n", b""): break
        k, v = l.decode().split(":", 1)
        headers[k.lower()] = v.strip()
    want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    assert headers["sec-websocket-accept"] == want, headers
    s.sendall(frame(1, b"hello ws"))
    assert read(f) == (1, b"hello ws")
    big = os.urandom(70000)
    s.sendall(frame(2, big))
    assert read(f) == (2, big)
    s.sendall(frame(9, b"p"))
    assert read(f) == (10, b"p")
    s.sendall(frame(8, struct.pack("!H", 1000)))
    assert read(f)[0] == 8
EOF
}
check "websocket /ws: handshake and echo (HTTP and HTTPS)" websocket

refused_fast() {
	local a start
	for a in "$TESTNET_UNUSED4" "[$TESTNET_UNUSED6]" "$TESTNET_HOST4" "[$TESTNET_HOST6]"; do
		start=$(date +%s%N)
		"${CURL[@]}" --max-time 5 "http://$a/" >/dev/null 2>&1
		[ $? = 7 ] || fail "$a: not refused"
		[ $(($(date +%s%N) - start)) -lt 1000000000 ] || fail "$a: took over 1 s"
	done
	dig +time=1 +tries=1 +short @"$TESTNET_DNS4" -p 53 example.test >/dev/null &&
		! "${CURL[@]}" --max-time 5 "http://$TESTNET_DNS4/" >/dev/null 2>&1
}
check "unused addresses, the host's own veth address and the DNS address: refused at once" refused_fast

echo_port() {
	"$PY" - "$TESTNET_OTHER4" "$TESTNET_DUAL6" <<'EOF'
import os, socket, sys, threading
for addr in sys.argv[1:]:
    data = os.urandom(5 << 20)
    s = socket.create_connection((addr, 9000), timeout=10)
    t = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
    t.start()
    got = bytearray()
    while True:
        c = s.recv(1 << 20)
        if not c: break
        got += c
    t.join()
    assert got == data, (addr, len(got))
EOF
}
check "TCP echo on 9000 (v4, v6, 5 MiB, half-close)" echo_port

concurrency() {
	"$PY" - "$TESTNET_EXAMPLE4" "$CA" <<'EOF'
import hashlib, socket, ssl, sys, threading, time
addr, ca = sys.argv[1], sys.argv[2]
N = 60
ctx = ssl.create_default_context(cafile=ca)
want = hashlib.sha256((bytes(range(251)) * 4000)[:1000000]).hexdigest()
# a reader that asks for a lot and never reads
stalled = [socket.create_connection((addr, p), timeout=10) for p in (80, 443)]
stalled[1] = ctx.wrap_socket(stalled[1], server_hostname="example.test")
for s in stalled:
    s.sendall(b"GET /bytes/1099511627776 HTTP/1.1\r\nHost: example.test\r\n\r\n")
time.sleep(0.5)
# N connections open at the same time before any request is sent
socks = []
for i in range(N):
    s = socket.create_connection((addr, 443 if i % 2 else 80), timeout=30)
    if i % 2:
        s = ctx.wrap_socket(s, server_hostname="example.test")
    socks.append(s)
errors = []
def fetch(s):
    try:
        s.sendall(b"GET /bytes/1000000 HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            c = s.recv(1 << 20)
            if not c: break
            data += c
        body = data.split(b"\r\n\r\n", 1)[1]
        if hashlib.sha256(body).hexdigest() != want:
            errors.append("bad body %d" % len(body))
    except Exception as e:
        errors.append(repr(e))
start = time.time()
threads = [threading.Thread(target=fetch, args=(s,)) for s in socks]
for t in threads: t.start()
for t in threads: t.join()
assert not errors, errors
print("%d concurrent fetches in %.2f s beside two stalled readers" % (N, time.time() - start))
for s in stalled: s.close()
EOF
}
check "60 concurrent connections (HTTP and HTTPS) beside stalled readers" concurrency

garbage() {
	"$PY" - "$TESTNET_DNS4" "$TESTNET_API4" <<'EOF'
import os, random, socket, struct, sys
dns, web = sys.argv[1], sys.argv[2]
rnd = random.Random(1)
q = bytes.fromhex("abcd01000001000000000000") + b"\x07example\x04test\x00\x00\x01\x00\x01"
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(300):
    kind = i % 4
    if kind == 0:
        m = os.urandom(rnd.randrange(0, 600))
    elif kind == 1:
        m = q[:rnd.randrange(0, len(q))]
    elif kind == 2:
        m = bytearray(q)
        m[rnd.randrange(len(m))] = rnd.randrange(256)
        m = bytes(m)
    else:
        m = q[:12] + b"\xc0\x0c\x00\x01\x00\x01"  # compression pointer in the question
    u.sendto(m, (dns, 53))
t = socket.create_connection((dns, 53), timeout=5)
t.sendall(struct.pack("!H", 40000) + os.urandom(100))
t.close()
for port, junk in ((80, b"\x16\x03\x01garbage\r\n\r\n"), (80, b"GET /bytes/x HTTP/1.1\r\n\r\n"),
                   (8080, b"POST /sha256 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
                   (443, b"GET / HTTP/1.1\r\n\r\n"), (443, os.urandom(3000)), (9000, b"")):
    s = socket.create_connection((web, port), timeout=5)
    try:  # the server may answer and close before we are done
        s.sendall(junk)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
    except OSError:
        pass
    s.close()
# still answering (a fresh socket: the old one holds replies to the junk)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(3)
u.sendto(b"\x12\x34" + q[2:], (dns, 53))
r, _ = u.recvfrom(4096)
assert r[:2] == b"\x12\x34" and r[3] & 0x0F == 0 and r.endswith(bytes([203, 0, 113, 12])), r
s = socket.create_connection((web, 80), timeout=5)
s.sendall(b"GET /status/200 HTTP/1.0\r\n\r\n")
assert s.recv(100).startswith(b"HTTP/1.1 200"), "web server gone"
EOF
}
check "servers survive malformed DNS, HTTP and TLS input" garbage

python_helpers() {
	"$PY" - "$HERE" <<'EOF'
import hashlib, subprocess, sys, urllib.request
sys.path.insert(0, sys.argv[1])
import testnet
testnet.require_up()
env = testnet.ENV
mark = testnet.log_mark(env["TESTNET_DNS_LOG"])
name = "py-helper.NotAllowed.test"
subprocess.run(["dig", "+short", "@" + env["TESTNET_DNS4"], name, "AAAA"], check=True,
               capture_output=True)
assert testnet.dns_log_count(mark, name.lower(), "AAAA") == 1
assert testnet.dns_log_count(mark, name, "A") == 0
assert testnet.dns_log_count_suffix(mark, ".notallowed.test") == 1
body = urllib.request.urlopen("http://%s/bytes/100000" % env["TESTNET_OTHER4"], timeout=10).read()
assert body == testnet.pattern(0, 100000)
assert testnet.pattern(1000, 500) == body[1000:1500]
EOF
}
check "Python helpers (tests/net/testnet.py)" python_helpers

idempotent_up() {
	local pid
	pid=$(cat "$TESTNET_RUN_DIR/servers.pid")
	bash "$HERE/testnet.sh" up | grep -q "already up" &&
		[ "$(cat "$TESTNET_RUN_DIR/servers.pid")" = "$pid" ]
}
check "up again: nothing changes" idempotent_up

host_untouched() {
	local bad=0 r
	ip route show default | grep -q "$TESTNET_VETH_HOST" && bad=1
	ip -6 route show default | grep -q "$TESTNET_VETH_HOST" && bad=1
	while read -r r; do
		"$PY" -c '
import ipaddress, sys
n = ipaddress.ip_network(sys.argv[1], strict=False)
doc = [ipaddress.ip_network(p) for p in ("192.0.2.0/24","198.51.100.0/24","203.0.113.0/24","2001:db8::/32","fe80::/64","ff00::/8")]
sys.exit(0 if any(n.version == d.version and n.subnet_of(d) for d in doc) else 1)' "$r" ||
			{
				echo "route outside the documentation ranges: $r"
				bad=1
			}
	done < <({
		ip -4 route show table all dev "$TESTNET_VETH_HOST"
		ip -6 route show table all dev "$TESTNET_VETH_HOST"
	} | awk '{ if ($1 ~ /^(local|broadcast|multicast|anycast)$/) print $2; else print $1 }')
	return "$bad"
}
check "host: no default route changed, veth routes only in the documentation ranges" host_untouched

finish
