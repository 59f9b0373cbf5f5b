#!/bin/bash
# The `sandbox` command-line tool against real VMs: output streaming, exit
# status, stdin, metadata/env/audit, list and kill, Ctrl-C, the library's
# errors, image build, the man page and the README example.
set -uo pipefail
src=$(cd "$top_srcdir" && pwd)
bld=$(cd "$top_builddir" && pwd)
SBX=$bld/tools/sandbox
PY=${PYTHON:-/usr/bin/python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/sbx-cli.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT
export SANDBOX_STATE_DIR=${SANDBOX_TEST_STATE_DIR:-/var/lib/libsandbox-test}-cli
export SANDBOX_RUN_DIR=$work/run
passed=0 failed=0
ok() { echo "ok - $1"; passed=$((passed + 1)); }
not_ok() { echo "not ok - $1"; failed=$((failed + 1)); }
check() { # name, command...
	local name=$1
	shift
	if "$@"; then ok "$name"; else not_ok "$name"; fi
}
[ -x "$SBX" ] || { echo "FAIL: $SBX not built"; exit 1; }
[ -x "$PY" ] || { echo "FAIL: $PY not found"; exit 1; }
# the bracket keeps pgrep from matching a shell whose command line holds the id
qemu_of() { pgrep -f "guest=sbx-[${1:0:1}]${1:1}" >/dev/null; }
vm_gone() { [ -n "$1" ] && ! qemu_of "$1"; }

# ------------------------------------------------------------ help, man
check "--help lists the commands" bash -c "'$SBX' --help | grep -q 'image build' && '$SBX' run --help | grep -q -- '--secret NAME@HOST'"
check "bad usage exits 2" bash -c "'$SBX' frobnicate 2>/dev/null; [ \$? = 2 ] && '$SBX' run 2>/dev/null; [ \$? = 2 ]"
check "man page renders without warnings" bash -c "out=\$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l '$src/doc/sandbox.1' 2>&1 >/dev/null); [ -z \"\$out\" ] || { echo \"\$out\"; false; }"

# ------------------------------------------ errors: same as the C API
"$bld/tests/frontends/error_reference" >"$work/ref.tsv" || { echo "FAIL: error_reference"; exit 1; }
"$PY" "$src/tests/frontends/cli_args.py" "$src/tests/frontends/error_cases.json" >"$work/cases.tsv"
[ "$(cut -f1 "$work/ref.tsv" | sort)" = "$(cut -d$'\x1f' -f1 "$work/cases.tsv" | sort)" ] &&
	ok "CLI cases cover the C reference" || not_ok "CLI cases cover the C reference"
while IFS=$'\x1f' read -r name envs args; do
	IFS=$'\t' read -r _ code message < <(grep "^$name	" "$work/ref.tsv")
	strerr=$("$PY" -c 'import sys,ctypes; l=ctypes.CDLL(sys.argv[1]); l.sandbox_strerror.restype=ctypes.c_char_p; print(l.sandbox_strerror(int(sys.argv[2])).decode())' "$bld/.libs/libsandbox.so.1" "$code")
	err=$(eval "env $envs '$SBX' run $args -- true" 2>&1 >/dev/null)
	rc=$?
	if [ "$rc" = 125 ] && [ "$err" = "sandbox: create: $strerr: $message" ]; then
		ok "error $name"
	else
		not_ok "error $name: rc=$rc, got '$err', want 'sandbox: create: $strerr: $message'"
	fi
done <"$work/cases.tsv"
check "secret value comes from the environment only" bash -c "unset TOKEN; '$SBX' run --secret TOKEN@api.example.com -- true 2>&1 | grep -q 'environment variable TOKEN is not set'"

# --------------------------- network policy, secrets, volumes (test network)
curl_='curl -sS --max-time 20'
if bash "$src/tests/net/testnet.sh" status >/dev/null 2>&1; then
	ok "the test network is up"
	"$SBX" run -q --allow-net example.test --dns-server 192.0.2.53 -- \
		sh -c "$curl_ http://example.test/echo && echo REACHED; $curl_ http://other.test/echo || echo BLOCKED" \
		>"$work/net1" 2>&1
	check "run --allow-net/--dns-server: the allowed host answers, another is blocked" \
		bash -c "grep -qx REACHED '$work/net1' && grep -q '\"path\": \"/echo\"' '$work/net1' && grep -qx BLOCKED '$work/net1'" ||
		cat "$work/net1"
	# without --allow-net nothing is restricted (still through the proxy, audited)
	secret=s3cret-cli-$$
	want=$(printf %s "$secret" | sha256sum | cut -d' ' -f1)
	ca=$(. "$src/tests/net/env.sh" && echo "$TESTNET_CA")
	TOKEN=$secret "$SBX" run -q --dns-server 192.0.2.53 --secret-in-body TOKEN@api.example.test \
		--tls-ca-file "$ca" --block-misdirected -- sh -c 'echo "PH=$TOKEN"; '"$curl_"' --data-binary "$TOKEN" http://api.example.test/echo; echo; '"$curl_"' --data-binary "$TOKEN" https://api.example.test/echo; echo; '"$curl_"' -o /dev/null -w "other=%{http_code}\n" http://other.test/echo; '"$curl_"' -o /dev/null -w "misdirected=%{http_code}\n" -H "X-Token: $TOKEN" http://other.test/echo' \
		>"$work/net2" 2>&1
	check "run --secret-in-body: the guest sees only a placeholder" \
		bash -c "grep -Eqx 'PH=SBX_PH_TOKEN_[a-z2-7]{32}' '$work/net2' && ! grep -q '$secret' '$work/net2'" ||
		cat "$work/net2"
	check "run --secret-in-body: the value (from our environment) reaches the allowed host" \
		grep -q "\"body_sha256\": \"$want\"" "$work/net2"
	check "run --tls-ca-file: HTTPS upstream verified with our CA, value substituted" \
		bash -c "[ \$(grep -c '\"body_sha256\": \"$want\"' '$work/net2') = 2 ] && grep -q '\"tls\": true' '$work/net2'"
	check "run without --allow-net: other hosts are reachable" grep -qx "other=200" "$work/net2"
	check "run --block-misdirected: a placeholder to another host is blocked" \
		grep -qx 'misdirected=403' "$work/net2"
else
	not_ok "the test network is not up (run tests/net/testnet.sh up as root): network tests not run"
fi
mkdir -p "$work/proj"
echo "from the host" >"$work/proj/hello.txt"
chmod 755 "$work" "$work/proj"
chmod 644 "$work/proj/hello.txt"
# stdout alone: the guest's stderr arrives on its own stream, and a chunk
# of it between two stdout lines would split them in a merged file
"$SBX" run -q --no-net --volume "$work/proj:/project:ro" -- \
	sh -c "cat /project/hello.txt; echo x > /project/new.txt || echo READONLY; $curl_ http://203.0.113.7/ || echo NONET" \
	>"$work/vol" 2>"$work/vol.err"
if grep -qx 'from the host' "$work/vol" && grep -qx READONLY "$work/vol" &&
	[ ! -e "$work/proj/new.txt" ]; then
	ok "run --volume ...:ro: readable, not writable"
else
	not_ok "run --volume ...:ro: readable, not writable"
	echo "# stdout:"; sed 's/^/#   /' "$work/vol"
	echo "# stderr:"; sed 's/^/#   /' "$work/vol.err"
	ls -la "$work/proj" | sed 's/^/#   /'
fi
check "run --no-net: nothing is reachable" grep -qx NONET "$work/vol"

# ---------------------------------------- run: output, status, audit
stamp() { while IFS= read -r l; do echo "$(date +%s.%N) $l"; done; }
"$SBX" run --meta owner=cli --env GREETING=hi --audit-log "$work/audit.jsonl" -- \
	sh -c 'echo "$GREETING"; echo err >&2; sleep 2; echo second; exit 7' \
	2>"$work/err" | stamp >"$work/out"
rc=${PIPESTATUS[0]}
check "run: exit status passed on" [ "$rc" = 7 ]
check "run: stdout" [ "$(cut -d' ' -f2- "$work/out")" = "$(printf 'hi\nsecond')" ]
check "run: stderr separate (and the sandbox id line)" bash -c "grep -qx err '$work/err' && grep -Eqx 'sandbox [0-9a-f]{32}' '$work/err'"
check "run: output streamed as it came" "$PY" -c "
import sys; t = [float(l.split()[0]) for l in open('$work/out')]; sys.exit(0 if t[1] - t[0] > 1.5 else 1)"
check "run: audit log with metadata" "$PY" -c "
import json, sys
ev = [json.loads(l) for l in open('$work/audit.jsonl')]
kinds = [e['event'] for e in ev]
ok = kinds[0] == 'sandbox.create' and kinds[-1] == 'sandbox.kill' and 'exec.start' in kinds
ok = ok and all(e['metadata'] == {'owner': 'cli'} for e in ev)
sys.exit(0 if ok else 1)"
check "run -i: stdin forwarded" bash -c "[ \"\$(echo 'print(6 * 7)' | '$SBX' run -q -i -- python3)\" = 42 ]"
"$SBX" run -q -- no-such-command-here 2>"$work/err"
check "run: missing command exits 127 with the library's message" bash -c "[ $? = 127 ] && grep -q 'not found: cannot start' '$work/err'"

"$SBX" run -q --timeout 2 -- sleep 60 2>"$work/err"
check "run --timeout: lifetime end exits 125 with the library's reason" bash -c "[ $? = 125 ] && grep -q 'lifetime timeout expired' '$work/err'"

# ------------------------------------------------------ list and kill
"$SBX" run --meta owner=lister -- sleep 600 >/dev/null 2>&1 &
runpid=$!
pids+=("$runpid")
id=
for _ in $(seq 1 300); do
	id=$("$SBX" list | awk '$5 == "sleep" { print $1 }')
	[ -n "$id" ] && break
	sleep 0.2
done
check "list shows the running sandbox with metadata" bash -c "'$SBX' list | grep -E '^$id +$runpid +[0-9]+s +owner=lister +sleep 600'"
check "kill ID (prefix) stops it" "$SBX" kill "${id:0:10}"
wait "$runpid"
check "its run exited 143" [ $? = 143 ]
check "its VM is gone" vm_gone "$id"
check "list is empty again" bash -c "[ \$('$SBX' list | wc -l) = 1 ]"
check "kill of an unknown id fails" bash -c "! '$SBX' kill 0123456789abcdef 2>/dev/null"

# ----------------------------------------------------------- Ctrl-C
set -m # own process group, so SIGINT is not ignored as in background jobs
"$SBX" run -- sleep 600 >/dev/null 2>"$work/err" &
runpid=$!
set +m
pids+=("$runpid")
for _ in $(seq 1 300); do
	id=$(grep -Eo '[0-9a-f]{32}' "$work/err" 2>/dev/null)
	[ -n "$id" ] && qemu_of "$id" && break
	sleep 0.2
done
sleep 1
kill -INT "$runpid"
wait "$runpid"
check "SIGINT: run exits 130" [ $? = 130 ]
check "SIGINT: the VM is destroyed" vm_gone "$id"

# ------------------------------------------------------- image build
# The same recipe as `make image`, with this tree's agent; the image the
# tests use is up to date, so this checks the plumbing and the progress
# display without a rebuild.
SANDBOX_IMAGE_RECIPE=$src/guest/image "$SBX" image build --agent "$bld/guest/agent/sandbox-agent" \
	>"$work/img" 2>&1
rc=$?
check "image build succeeds with progress lines" bash -c "[ $rc = 0 ] && grep -Eq '^\[ *[0-9]+\.[0-9]s\] \[image\]' '$work/img' && grep -q 'image ready' '$work/img'" || cat "$work/img"
check "image build: a missing agent is an error" bash -c "! '$SBX' image build --agent /nonexistent 2>/dev/null"

# ---------------------------------------------------- README example
mkdir -p "$work/bin"
ln -s "$SBX" "$work/bin/sandbox"
PATH=$work/bin:$PATH bash "$src/examples/cli/quickstart.sh" >"$work/ex" 2>&1
check "README example runs as written" bash -c "grep -q 'sum of squares 1..100 = 338350' '$work/ex' && grep -qx 'exit code 0' '$work/ex'" || cat "$work/ex"

echo "# cli: $passed passed, $failed failed"
[ "$failed" = 0 ]
