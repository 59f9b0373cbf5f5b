# shellcheck shell=bash
# Names, addresses and paths of the libsandbox test network
# (tests/net/README.md). Source it: `. tests/net/env.sh`.
# tests/net/testnet.h holds the same values for C tests; tests/net/zone
# holds the DNS records. tests/net/selftest.sh checks that the three agree.

# namespace and the veth pair joining it to the host's (root) namespace
export TESTNET_NS=sbx-testnet
export TESTNET_VETH_HOST=sbxtn0
export TESTNET_VETH_NS=sbxtn1
# the root-namespace end of the veth: an address of the host itself (no
# test server listens there); the namespace end is its gateway back
export TESTNET_HOST4=198.51.100.1
export TESTNET_HOST6=2001:db8:ffff::1
export TESTNET_PEER4=198.51.100.2
export TESTNET_PEER6=2001:db8:ffff::2

# state written by `testnet.sh up`
export TESTNET_RUN_DIR=/run/libsandbox-testnet
export TESTNET_CA=$TESTNET_RUN_DIR/ca.pem
export TESTNET_DNS_LOG=$TESTNET_RUN_DIR/dns-queries.log
export TESTNET_ACCESS_LOG=$TESTNET_RUN_DIR/access.log
export TESTNET_SERVERS_LOG=$TESTNET_RUN_DIR/servers.log

# the DNS server (UDP and TCP 53; nothing else listens on these)
export TESTNET_DNS4=192.0.2.53
export TESTNET_DNS6=2001:db8::53

# server ports on every server address
export TESTNET_HTTP_PORT=80
export TESTNET_HTTP_ALT_PORT=8080
export TESTNET_HTTPS_PORT=443
export TESTNET_HTTPS_ALT_PORT=8443
export TESTNET_ECHO_PORT=9000

# server addresses (names resolve to them, see tests/net/zone)
export TESTNET_EXAMPLE4=203.0.113.12      # example.test
export TESTNET_API4=203.0.113.10          # api.example.test
export TESTNET_A4=203.0.113.11            # a.example.test
export TESTNET_OTHER4=203.0.113.13        # other.test
export TESTNET_FRONT4=203.0.113.14        # front.example.test
export TESTNET_DUAL4=203.0.113.15         # dual.example.test (A)
export TESTNET_DUAL6=2001:db8:1::15       # dual.example.test (AAAA)
export TESTNET_V6=2001:db8:1::10          # v6.example.test
export TESTNET_FILES4=203.0.113.20        # api.files.example.test, x.files.example.test
export TESTNET_EXPIRED4=203.0.113.21      # expired.example.test (expired certificate)
export TESTNET_SELFSIGNED4=203.0.113.22   # selfsigned.example.test (self-signed)
export TESTNET_WRONGNAME4=203.0.113.23    # wrongname.example.test (certificate for another name)
export TESTNET_NOTALLOWED4=203.0.113.99   # *.notallowed.test
# server addresses no name resolves to
export TESTNET_LITERAL4=203.0.113.7
export TESTNET_EXTRA4=198.51.100.20
# routed to the namespace, but nothing listens: connections are refused
# at once (RST), never left hanging
export TESTNET_UNUSED4=203.0.113.200
export TESTNET_UNUSED6=2001:db8:1::200

# /bytes/N streams byte i = i mod TESTNET_PATTERN_MOD
export TESTNET_PATTERN_MOD=251
