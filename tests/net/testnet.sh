#!/bin/bash
# The libsandbox test network: upstream servers on documentation-range
# addresses in a network namespace of their own, reachable from the host's
# root namespace through one veth pair (tests/net/README.md).
#
#   testnet.sh up       create it and start the servers (idempotent)
#   testnet.sh down     remove everything `up` made (idempotent)
#   testnet.sh status   exit 0 and say so when it is up and answering
#
# Runs as root. Touches nothing on the host but: the namespace, the veth
# pair, routes for the test addresses through that veth (single addresses
# only: a documentation prefix may also hold something real), two
# per-interface sysctls of the veth, and $TESTNET_RUN_DIR.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=env.sh
. "$HERE/env.sh"
PY=/usr/bin/python3
NS=$TESTNET_NS
VH=$TESTNET_VETH_HOST
VN=$TESTNET_VETH_NS
RUN=$TESTNET_RUN_DIR
ZONE=$HERE/zone
EXTRA=("$TESTNET_LITERAL4" "$TESTNET_EXTRA4")
DNS_ADDRS=("$TESTNET_DNS4" "$TESTNET_DNS6")

log() { printf '[testnet] %s\n' "$*"; }
die() {
	printf '[testnet] ERROR: %s\n' "$*" >&2
	exit 1
}
nsexec() { ip netns exec "$NS" "$@"; }

# Pid of our server process, if it is running (checked by its command line,
# so a recycled pid is never taken for ours).
server_pid() {
	local pid
	[ -r "$RUN/servers.pid" ] || return 1
	pid=$(cat "$RUN/servers.pid")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q "tests/net/servers.py" || return 1
	echo "$pid"
}

ns_exists() { ip netns list | grep -qx "$NS\( (id: [0-9]*)\)\?"; }

# One DNS query and one HTTP request from this (root) namespace.
answering() {
	local a
	a=$(dig +time=2 +tries=2 +short @"$TESTNET_DNS4" example.test A 2>/dev/null) || return 1
	[ "$a" = "$TESTNET_EXAMPLE4" ] || return 1
	curl -sf --max-time 5 -o /dev/null "http://$TESTNET_EXAMPLE4/" || return 1
}

is_up() {
	ns_exists && ip link show "$VH" >/dev/null 2>&1 && server_pid >/dev/null &&
		[ -f "$RUN/up" ] && answering
}

# ------------------------------------------------------------ certificates
openssl_config() {
	cat <<EOF
[ ca ]
default_ca = testca
[ testca ]
dir = $RUN/ca
database = \$dir/index.txt
new_certs_dir = \$dir/new
serial = \$dir/serial
certificate = $RUN/ca.pem
private_key = $RUN/ca.key
default_md = sha256
policy = any_name
unique_subject = no
copy_extensions = none
[ any_name ]
commonName = supplied
[ req ]
distinguished_name = req_dn
prompt = no
[ req_dn ]
CN = libsandbox testnet CA
[ v3_ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ leaf ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = \${ENV::SAN}
EOF
}

# leaf NAME CN SAN START END: a key and a certificate signed by the test CA
leaf() {
	local name=$1 cn=$2 san=$3 start=$4 end=$5
	openssl genrsa -out "$RUN/$name.key" 2048 2>/dev/null
	openssl req -new -config "$RUN/ca/openssl.cnf" -key "$RUN/$name.key" -subj "/CN=$cn" \
		-out "$RUN/ca/$name.csr"
	SAN=$san openssl ca -config "$RUN/ca/openssl.cnf" -batch -notext -extensions leaf \
		-startdate "$start" -enddate "$end" -in "$RUN/ca/$name.csr" \
		-out "$RUN/$name.pem" 2>"$RUN/ca/$name.log" || {
		cat "$RUN/ca/$name.log" >&2
		die "signing the $name certificate failed"
	}
}

make_certs() {
	local when='+%Y%m%d%H%M%SZ' san
	# the config names ${ENV::SAN}, so it must be set for every command
	export SAN=DNS:unused
	mkdir -p "$RUN/ca/new"
	: >"$RUN/ca/index.txt"
	openssl rand -hex 8 >"$RUN/ca/serial"
	openssl_config >"$RUN/ca/openssl.cnf"
	openssl genrsa -out "$RUN/ca.key" 2048 2>/dev/null
	SAN=DNS:unused openssl req -x509 -config "$RUN/ca/openssl.cnf" -extensions v3_ca \
		-key "$RUN/ca.key" -days 3650 -out "$RUN/ca.pem"
	san=$("$PY" "$HERE/netplan.py" san "$ZONE" "${EXTRA[@]}")
	local from to
	from=$(date -u -d '-2 days' "$when")
	to=$(date -u -d '+365 days' "$when")
	leaf server "example.test" "$san" "$from" "$to"
	leaf expired "expired.example.test" "DNS:expired.example.test" \
		"$(date -u -d '-400 days' "$when")" "$(date -u -d '-30 days' "$when")"
	leaf wrongname "unrelated.test" "DNS:unrelated.test" "$from" "$to"
	openssl genrsa -out "$RUN/selfsigned.key" 2048 2>/dev/null
	SAN=DNS:selfsigned.example.test openssl req -x509 -config "$RUN/ca/openssl.cnf" \
		-extensions leaf -key "$RUN/selfsigned.key" -subj "/CN=selfsigned.example.test" \
		-days 365 -out "$RUN/selfsigned.pem" 2>/dev/null
	chmod 0644 "$RUN"/*.pem
	chmod 0600 "$RUN"/*.key
}

# ---------------------------------------------------------------- network
make_network() {
	local a
	for a in "$TESTNET_HOST4" "$TESTNET_PEER4" "$TESTNET_HOST6" "$TESTNET_PEER6"; do
		if ip -o addr show | awk '{print $2, $4}' | grep -v "^$VH " | grep -q " $a/"; then
			die "$a (the test network's veth) is already an address of this host"
		fi
	done
	local routes
	# the unused addresses are routed too (nothing listens there: refused
	# in the namespace), so no test packet ever leaves for the real network
	routes=$("$PY" "$HERE/netplan.py" routes "$VH" "$ZONE" "${EXTRA[@]}" "${DNS_ADDRS[@]}" \
		"$TESTNET_UNUSED4" "$TESTNET_UNUSED6") ||
		die "no safe address plan on this host (see above)"

	ip netns add "$NS"
	ip link add "$VH" type veth peer name "$VN" netns "$NS"
	# the host end: no autoconfiguration, no router advertisements
	sysctl -qw "net.ipv6.conf.$VH.accept_ra=0" "net.ipv6.conf.$VH.autoconf=0"
	ip addr add "$TESTNET_HOST4/32" peer "$TESTNET_PEER4/32" dev "$VH"
	ip -6 addr add "$TESTNET_HOST6/64" dev "$VH" nodad
	ip link set "$VH" up

	nsexec ip link set lo up
	nsexec ip addr add "$TESTNET_PEER4/32" peer "$TESTNET_HOST4/32" dev "$VN"
	nsexec ip -6 addr add "$TESTNET_PEER6/64" dev "$VN" nodad
	nsexec ip link set "$VN" up
	# every server address on the namespace's loopback...
	while read -r a; do
		case $a in
		*:*) nsexec ip -6 addr add "$a/128" dev lo nodad ;;
		*) nsexec ip addr add "$a/32" dev lo ;;
		esac
	done < <("$PY" "$HERE/netplan.py" addresses "$ZONE" "${EXTRA[@]}" "${DNS_ADDRS[@]}")
	# ...and the rest of the server ranges local too, so a connection to
	# an address where nothing listens is refused at once instead of hanging
	nsexec ip route add local 203.0.113.0/24 dev lo
	nsexec ip route add local 192.0.2.0/24 dev lo
	nsexec ip -6 route add local 2001:db8:1::/64 dev lo
	nsexec ip -6 route add local 2001:db8::/64 dev lo

	# the host namespace reaches the ranges through the veth, from its
	# veth address (so replies come straight back)
	while read -r a; do
		case $a in
		*:*) ip -6 route replace "$a" via "$TESTNET_PEER6" dev "$VH" src "$TESTNET_HOST6" ;;
		*) ip route replace "$a" via "$TESTNET_PEER4" dev "$VH" src "$TESTNET_HOST4" ;;
		esac
	done <<<"$routes"
	printf '%s\n' "$routes" >"$RUN/routes"
}

start_servers() {
	local args=(--zone "$ZONE" --run-dir "$RUN") a
	for a in "${EXTRA[@]}"; do args+=(--extra "$a"); done
	for a in "${DNS_ADDRS[@]}"; do args+=(--dns "$a"); done
	rm -f "$RUN/servers.pid"
	# not through nsexec (a function would leave a subshell behind), and
	# without our lock descriptor (it would hold the lock for its lifetime)
	ip netns exec "$NS" setsid "$PY" "$HERE/servers.py" "${args[@]}" \
		</dev/null >>"$RUN/servers.out" 2>&1 9>&- &
	for _ in $(seq 1 100); do
		server_pid >/dev/null && answering && return 0
		kill -0 $! 2>/dev/null || break
		sleep 0.1
	done
	tail -20 "$RUN/servers.out" "$RUN/servers.log" >&2 2>/dev/null || true
	die "the servers did not come up"
}

cmd_up() {
	[ "$(id -u)" = 0 ] || die "must run as root"
	if is_up; then
		log "already up"
		return 0
	fi
	# half-made or stale: start from nothing
	cmd_down >/dev/null
	mkdir -p "$RUN"
	chmod 0755 "$RUN"
	make_certs
	make_network
	start_servers
	touch "$RUN/up"
	log "up: dns $TESTNET_DNS4 [$TESTNET_DNS6], CA $TESTNET_CA, logs in $RUN"
}

cmd_down() {
	[ "$(id -u)" = 0 ] || die "must run as root"
	local pid p
	rm -f "$RUN/up"
	if pid=$(server_pid); then
		kill "$pid" 2>/dev/null || true
	fi
	# anything else still running inside the namespace was started there by
	# us (only this script puts processes in it)
	if ns_exists; then
		for p in $(ip netns pids "$NS" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
		for _ in $(seq 1 30); do
			[ -z "$(ip netns pids "$NS" 2>/dev/null)" ] && break
			sleep 0.1
		done
		for p in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
	fi
	# routes through the veth go with it; delete them first anyway so an
	# interrupted `up` cannot leave one pointing nowhere
	if ip link show "$VH" >/dev/null 2>&1; then
		ip -4 route flush dev "$VH" 2>/dev/null || true
		ip -6 route flush dev "$VH" 2>/dev/null || true
		ip link del "$VH" 2>/dev/null || true
	fi
	if ns_exists; then
		ip netns del "$NS"
	fi
	rm -rf "$RUN"
	log "down"
}

cmd_status() {
	if is_up; then
		log "up (servers pid $(server_pid), namespace $NS, logs in $RUN)"
		return 0
	fi
	if ns_exists; then log "namespace $NS exists"; else log "namespace $NS missing"; fi
	if server_pid >/dev/null; then log "servers running"; else log "servers not running"; fi
	log "NOT UP: run tests/net/testnet.sh up (as root)"
	return 1
}

# one up or down at a time (the lock file outlives `down` on purpose)
lock() {
	mkdir -p /run/lock
	exec 9>/run/lock/libsandbox-testnet.lock
	flock 9
}

case ${1:-} in
up) lock && cmd_up ;;
down) lock && cmd_down ;;
status) cmd_status ;;
*)
	echo "usage: $0 up|down|status" >&2
	exit 2
	;;
esac
