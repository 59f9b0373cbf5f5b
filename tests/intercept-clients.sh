#!/bin/sh
# Real clients (curl forced to TLS 1.2, Python's ssl/urllib, Node's https
# over TLS 1.3) through tests/tools/intercept_relay, which is nothing but
# the library's CA, TLS endpoint and HTTP processor glued to two sockets,
# against a Python HTTPS upstream with its own test CA. Runs in a private
# network namespace (loopback only). Checks: substitution in header, query,
# Basic and body for the approved host; the placeholder left alone for
# another host; echo protection; a 150 KB upload and a 100 MiB download
# intact; an upstream whose certificate names another host is refused.
set -eu
: "${top_builddir:=.}" "${top_srcdir:=..}"
relay="$(cd "$top_builddir" && pwd)/tests/tools/intercept_relay"
for tool in curl python3 node openssl unshare; do
	command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing (scripts/setup-host.sh installs it)"; exit 1; }
done
[ -x "$relay" ] || { echo "FAIL: $relay was not built"; exit 1; }
if [ -z "${SBX_IN_NETNS:-}" ]; then
	exec unshare -n env SBX_IN_NETNS=1 top_builddir="$top_builddir" top_srcdir="$top_srcdir" sh -c 'ip link set lo up && exec sh "$0"' "$0"
fi

work=$(mktemp -d)
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
fail() { echo "FAIL: $*"; for f in relay.log relay3.log upstream.log upstream2.log; do [ -f $f ] && { echo "--- $f"; tail -20 $f; }; done; exit 1; }

# test PKI for the upstream: a CA, a good leaf and a wrong-name leaf
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj "/CN=test upstream CA" -keyout ca.key -out ca.pem 2>/dev/null
for n in api.example.test other.example.test; do
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$n" \
		-keyout $n.key -out $n.csr 2>/dev/null
	printf 'subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\n' $n > $n.ext
	openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
		-extfile $n.ext -out $n.pem 2>/dev/null
done

SECRET_VALUE="sk-live-REAL-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
export SECRET_VALUE API_KEY="$SECRET_VALUE"

cat > upstream.py <<'PY'
import base64, http.server, json, os, ssl, sys, urllib.parse
REAL = os.environ["SECRET_VALUE"]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def reply(self, body, ctype="application/json"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def check(self, body=b""):
        u = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(u.query)
        auth = self.headers.get("Authorization", "")
        basic = ""
        if auth.startswith("Basic "):
            basic = base64.b64decode(auth[6:]).decode()
        out = {"path": u.path, "header_real": auth == "Bearer " + REAL,
               "query_real": q.get("key", [""])[0] == REAL,
               "basic_real": basic == "user:" + REAL,
               "body_real": REAL.encode() in body, "body_len": len(body),
               "echo": auth}
        self.reply(json.dumps(out).encode())
    def do_GET(self):
        if self.path.startswith("/download/"):
            n = int(self.path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            chunk = b"x" * 65536
            while n:
                k = min(n, len(chunk)); self.wfile.write(chunk[:k]); n -= k
            return
        self.check()
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.check(self.rfile.read(n))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1] + ".pem", sys.argv[1] + ".key")
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("ready", flush=True)
srv.serve_forever()
PY
python3 upstream.py api.example.test 8443 >upstream.log 2>&1 & pids="$pids $!"
python3 upstream.py other.example.test 9443 >upstream2.log 2>&1 & pids="$pids $!"
for i in $(seq 100); do
	grep -q ready upstream.log && grep -q ready upstream2.log && break
	sleep 0.1
done
grep -q ready upstream.log && grep -q ready upstream2.log || fail "upstream servers did not start"

"$relay" 7443 8443 api.example.test ca.pem relay-ca.pem API_KEY >relay.out 2>relay.log & pids="$pids $!"
# relays toward another host, for which the secret is not approved
RELAY_SECRET_HOST=api.example.test \
	"$relay" 7445 9443 other.example.test ca.pem relay3-ca.pem API_KEY >relay3.out 2>relay3.log & pids="$pids $!"
RELAY_SECRET_HOST=api.example.test RELAY_BLOCK_MISDIRECTED=1 \
	"$relay" 7444 9443 other.example.test ca.pem relay2-ca.pem API_KEY >relay2.out 2>relay2.log & pids="$pids $!"
for i in $(seq 50); do
	[ -s relay.out ] && [ -s relay2.out ] && [ -s relay3.out ] && break
	sleep 0.1
done
PH=$(sed -n 's/^PLACEHOLDER //p' relay.out)
[ -n "$PH" ] || fail "relay did not start"
sleep 0.5

C="curl -sS --max-time 60 --tlsv1.2 --tls-max 1.2 --cacert relay-ca.pem --resolve api.example.test:7443:127.0.0.1"
out=$($C -H "Authorization: Bearer $PH" "https://api.example.test:7443/check?key=$PH") || fail "curl: $out"
echo "$out" | grep -q '"header_real": true' || fail "header not substituted: $out"
echo "$out" | grep -q '"query_real": true' || fail "query not substituted: $out"
echo "$out" | grep -q "\"echo\": \"Bearer $PH\"" || fail "echo protection: $out"
case "$out" in *"$SECRET_VALUE"*) fail "value reached the client" ;; esac
out=$($C -u "user:$PH" "https://api.example.test:7443/basic") || fail "curl basic: $out"
echo "$out" | grep -q '"basic_real": true' || fail "Basic not substituted: $out"
case "$out" in *"$SECRET_VALUE"*|*"$(printf 'user:%s' "$SECRET_VALUE" | base64 -w0)"*) fail "Basic echo leaked" ;; esac
out=$($C --data "token=$PH" "https://api.example.test:7443/post") || fail "curl post: $out"
echo "$out" | grep -q '"body_real": true' || fail "body not substituted: $out"
echo "PASS: curl (TLS 1.2): header, query, Basic, body substituted; echo protected"

# a placeholder toward a host not on its secret's list stays a placeholder
PH3=$(sed -n 's/^PLACEHOLDER //p' relay3.out)
C3="curl -sS --max-time 60 --cacert relay3-ca.pem --resolve other.example.test:7445:127.0.0.1"
out=$($C3 -H "Authorization: Bearer $PH3" "https://other.example.test:7445/check?key=$PH3") || fail "curl other: $out"
echo "$out" | grep -q '"header_real": false' || fail "substituted for another host: $out"
echo "$out" | grep -q "\"echo\": \"Bearer $PH3\"" || fail "placeholder did not arrive unchanged: $out"
grep -q "secret.misdirected secret=API_KEY where=header:Authorization host=other.example.test" relay3.log ||
	fail "no misdirected event"
echo "PASS: misdirected placeholder left unchanged and reported"
PH2=$(sed -n 's/^PLACEHOLDER //p' relay2.out)
code=$(curl -sS --max-time 60 --cacert relay2-ca.pem --resolve other.example.test:7444:127.0.0.1 \
	-o blocked.txt -w '%{http_code}' -H "Authorization: Bearer $PH2" "https://other.example.test:7444/check") ||
	fail "curl blocked"
[ "$code" = 403 ] && grep -q "not one of that secret's hosts" blocked.txt || fail "block option: $code $(cat blocked.txt)"
echo "PASS: block option answers 403"

# 150 KB upload, 100 MiB download
head -c 153600 /dev/urandom | base64 -w0 > up.bin
out=$($C --data-binary @up.bin "https://api.example.test:7443/upload") || fail "upload: $out"
echo "$out" | grep -q "\"body_len\": $(stat -c %s up.bin)" || fail "upload size: $out"
start=$(date +%s.%N)
$C -o down.bin "https://api.example.test:7443/download/104857600" || fail "download"
end=$(date +%s.%N)
[ "$(stat -c %s down.bin)" = 104857600 ] || fail "download size $(stat -c %s down.bin)"
[ "$(tr -d x < down.bin | wc -c)" = 0 ] || fail "download corrupted"
echo "PASS: 150 KB upload and 100 MiB download intact ($(echo "$end - $start" | bc) s)"

python3 -c "
import json, os, socket, ssl, sys, urllib.request
real_gai = socket.getaddrinfo
socket.getaddrinfo = lambda h, *a, **k: real_gai('127.0.0.1' if h == 'api.example.test' else h, *a, **k)
ctx = ssl.create_default_context(cafile='relay-ca.pem')
ph = sys.argv[1]
req = urllib.request.Request('https://api.example.test:7443/check?key=' + ph, headers={'Authorization': 'Bearer ' + ph})
body = urllib.request.urlopen(req, context=ctx, timeout=60).read().decode()
d = json.loads(body)
assert d['header_real'] and d['query_real'], body
assert os.environ['SECRET_VALUE'] not in body
" "$PH" || fail "python3 urllib"
echo "PASS: python3 urllib"

# Node (https module; TLS 1.3 forced; the minted CA as extra CA)
NODE_EXTRA_CA_CERTS=relay-ca.pem node -e '
const https = require("https");
const ph = process.argv[1];
const req = https.request({host: "127.0.0.1", port: 7443, servername: "api.example.test",
  path: "/check?key=" + ph, minVersion: "TLSv1.3", maxVersion: "TLSv1.3",
  headers: {Host: "api.example.test:7443", Authorization: "Bearer " + ph}}, res => {
  const proto = res.socket.getProtocol();
  let b = ""; res.on("data", d => b += d); res.on("end", () => {
    const d = JSON.parse(b);
    if (!d.header_real || !d.query_real || b.includes(process.env.SECRET_VALUE)) { console.error(b); process.exit(1); }
    if (proto !== "TLSv1.3") { console.error(proto); process.exit(1); }
  });
});
req.on("error", e => { console.error(e.message); process.exit(1); });
req.end();' "$PH" || fail "node"
echo "PASS: node https over TLS 1.3"

# an upstream presenting a certificate for another name is refused
"$relay" 7446 9443 api.example.test ca.pem relay4-ca.pem API_KEY >relay4.out 2>relay4.log & pids="$pids $!"
sleep 0.5
code=$(curl -sS --max-time 20 --cacert relay4-ca.pem --resolve api.example.test:7446:127.0.0.1 \
	-o refused.txt -w '%{http_code}' "https://api.example.test:7446/check") || fail "curl wrong-name"
[ "$code" = 502 ] && grep -q "hostname mismatch" refused.txt || fail "wrong-name upstream: $code $(cat refused.txt)"
grep -q "upstream certificate verify failed: hostname mismatch" relay4.log || fail "no verify error: $(cat relay4.log)"
echo "PASS: wrong-name upstream refused: the client gets a 502 saying hostname mismatch"
for f in relay.log relay2.log relay3.log relay4.log upstream.log upstream2.log; do
	grep -q -- "$SECRET_VALUE" $f && fail "value in $f"
done
grep -q "event http.request GET https://api.example.test:443/check status=200" relay.log || fail "no audit event"
echo "PASS: events carry no value"
