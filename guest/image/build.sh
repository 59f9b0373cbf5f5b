#!/bin/bash
# libsandbox guest image recipe.
#
#   guest/image/build.sh --agent PATH --out DIR [--cache DIR] [--rebuild]
#
# Produces in DIR: vmlinux (PVH ELF kernel from Debian's linux-image-amd64),
# initrd.img (a static C /init, init.c, plus the few modules needed to reach
# the root disk and the agent channel), rootfs.img (raw ext4, Debian bookworm minbase + packages +
# the kernel's full module tree + the agent at /sbin/sandbox-agent) and
# manifest (key=value, read by the library).
#
# The expensive part (kernel download/extraction, initrd, mmdebstrap, base
# ext4 image) is cached under the cache dir, keyed by the recipe hash (this
# script, ./init.c, ./packages). With a warm cache only the agent is injected
# into a copy of the cached base image. If DIR already holds a manifest for
# the same recipe and agent, nothing is done.
#
# Needs root (mmdebstrap, mknod). Installs its own host dependencies with
# apt-get if they are missing. Uses the machine's own apt sources.
set -euo pipefail
umask 022

FORMAT_VERSION=1
SUITE=bookworm
KERNEL_META=linux-image-amd64
AGENT_GUEST_PATH=/sbin/sandbox-agent
# Extra free space in the root filesystem, on top of its content.
FREE_MIB=512
# none | gzip. Uncompressed boots faster under TCG (see README.md).
INITRD_COMPRESS=none
# Modules for the initramfs, in load order; their hard dependencies
# (modinfo -F depends) are added recursively before each one. crc32c_generic
# is the softdep (crypto-crc32c) of ext4/jbd2, needed by metadata_csum.
INITRD_MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk virtio_console crc32c_generic ext4"
# Kernel command line: the fast-boot set measured in shared PLATFORM.md, plus
# mitigations=off and rodata=off (each ~0.1-0.2 s under TCG; neither protects
# anything here: guest code already runs as root, the VM is the boundary),
# plus what our /init reads (see init.c).
CMDLINE="console=ttyS0 quiet panic=-1 i8042.noaux i8042.nomux i8042.nopnp i8042.nokbd 8250.nr_uarts=1 tsc=reliable no_timer_check cryptomgr.notests random.trust_cpu=on mitigations=off rodata=off root=/dev/vda rw"
HOST_DEPS="mmdebstrap e2fsprogs cpio xz-utils gzip kmod dpkg apt coreutils util-linux findutils gcc libc6-dev python3 openssl"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RECIPE_FILES="build.sh init.c packages"

log() { printf '[image] %s\n' "$*"; }
die() { printf '[image] error: %s\n' "$*" >&2; exit 1; }

usage() {
	cat <<EOF
usage: $0 --agent PATH --out DIR [--cache DIR] [--rebuild]
  --agent PATH  static sandbox-agent binary to install at $AGENT_GUEST_PATH
  --out DIR     output directory (vmlinux, initrd.img, rootfs.img, manifest)
  --cache DIR   build cache (default: \$LIBSANDBOX_IMAGE_CACHE or
                /var/cache/libsandbox/image-build)
  --rebuild     ignore the cache entry for this recipe and rebuild it
EOF
}

AGENT='' OUT='' CACHE=${LIBSANDBOX_IMAGE_CACHE:-/var/cache/libsandbox/image-build} REBUILD=0
while [ $# -gt 0 ]; do
	case "$1" in
	--agent) AGENT=${2:?--agent needs a path}; shift 2 ;;
	--agent=*) AGENT=${1#*=}; shift ;;
	--out) OUT=${2:?--out needs a directory}; shift 2 ;;
	--out=*) OUT=${1#*=}; shift ;;
	--cache) CACHE=${2:?--cache needs a directory}; shift 2 ;;
	--cache=*) CACHE=${1#*=}; shift ;;
	--rebuild) REBUILD=1; shift ;;
	-h|--help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done
[ -n "$AGENT" ] && [ -n "$OUT" ] || { usage >&2; exit 2; }
[ -f "$AGENT" ] || die "agent binary not found: $AGENT"
[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap, device nodes)"
AGENT=$(realpath "$AGENT")
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
START=$(date +%s.%N)

elapsed() { awk -v s="$START" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }
# openssl uses the CPU's SHA extensions: ~5x faster than sha256sum on the
# 1.3 GB root image.
sha256() {
	if command -v openssl >/dev/null; then
		openssl dgst -sha256 -r "$1" | cut -d' ' -f1
	else
		sha256sum "$1" | cut -d' ' -f1
	fi
}
fsize() { stat -c %s "$1"; }

# ---------------------------------------------------------------- recipe hash
RECIPE_HASH=$(cd "$HERE" && for f in $RECIPE_FILES; do
	[ -f "$f" ] || die "recipe file missing: $HERE/$f"
	printf '%s %s\n' "$f" "$(sha256sum <"$f" | cut -d' ' -f1)"
done | sha256sum | cut -d' ' -f1)
AGENT_SHA=$(sha256 "$AGENT")

manifest_get() { sed -n "s/^$1=//p" "$2" | head -n1; }

# ------------------------------------------------------------ nothing to do?
if [ "$REBUILD" = 0 ] && [ -f "$OUT/manifest" ] &&
	[ "$(manifest_get recipe_hash "$OUT/manifest")" = "$RECIPE_HASH" ] &&
	[ "$(manifest_get agent_sha256 "$OUT/manifest")" = "$AGENT_SHA" ]; then
	ok=1
	for k in kernel initrd rootfs; do
		f=$(manifest_get "$k" "$OUT/manifest")
		s=$(manifest_get "${k}_size" "$OUT/manifest")
		if [ -z "$f" ] || [ ! -f "$OUT/$f" ] || [ "$(fsize "$OUT/$f")" != "$s" ]; then ok=0; fi
	done
	if [ "$ok" = 1 ]; then
		log "up to date: $OUT (recipe ${RECIPE_HASH:0:12}, agent ${AGENT_SHA:0:12}); nothing to do"
		exit 0
	fi
fi

# ------------------------------------------------------------ host packages
export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=0
apt_update_once() {
	if [ "$APT_UPDATED" = 0 ]; then
		log "apt-get update"
		apt-get update -qq >/dev/null || die "apt-get update failed"
		APT_UPDATED=1
	fi
}
missing=()
for p in $HOST_DEPS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing host packages: ${missing[*]}"
	if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
		apt_update_once
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
			die "cannot install: ${missing[*]}"
	fi
fi

# ------------------------------------------------------------ cache
mkdir -p "$CACHE"
chmod 0755 "$CACHE"
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
	log "waiting for another build using $CACHE"
	flock 9
fi
TMP=
cleanup() {
	local rc=$?
	if [ -n "$TMP" ] && [ -d "$TMP" ]; then
		rm -rf --one-file-system "$TMP" || true
	fi
	rm -f "$OUT/.rootfs.img.tmp" "$OUT/.manifest.tmp" "$OUT/.vmlinux.tmp" "$OUT/.initrd.img.tmp" "$OUT/.agent.check" 2>/dev/null || true
	[ "$rc" = 0 ] || printf '[image] FAILED (exit %s)\n' "$rc" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
# Leftovers of builds that were killed.
for d in "$CACHE"/tmp.*; do
	[ -d "$d" ] && rm -rf --one-file-system "$d"
done

KEY=${RECIPE_HASH:0:16}
ENTRY=$CACHE/$KEY
if [ "$REBUILD" = 1 ] && [ -d "$ENTRY" ]; then
	log "--rebuild: dropping cache entry $KEY"
	rm -rf --one-file-system "$ENTRY"
fi

# Resolves the module names in $1 (space-separated) against the module tree
# at base $2, version $3 and prints them, hard dependencies first, once each.
resolve_modules() {
	local base=$2 kver=$3 seen=" " out=()
	visit() {
		local m=$1 d
		case "$seen" in *" $m "*) return 0 ;; esac
		seen="$seen$m "
		local deps
		deps=$(modinfo -b "$base" -k "$kver" -F depends "$m") || die "module $m not found in $kver"
		for d in ${deps//,/ }; do visit "$d"; done
		out+=("$m")
	}
	local m
	for m in $1; do visit "$m"; done
	printf '%s\n' "${out[@]}"
}

# Finds the first compressed stream in bzImage $1 that decompresses to an ELF
# and writes it to $2.
extract_vmlinux() {
	local bz=$1 dst=$2 off
	for off in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$bz" | cut -d: -f1); do
		# tail dies of SIGPIPE when xz stops at the end of the stream:
		# only xz's status counts.
		if { tail -c +$((off + 1)) "$bz" 2>/dev/null || true; } | xz -dc --single-stream >"$dst" 2>/dev/null &&
			[ "$(head -c 4 "$dst" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
			return 0
		fi
	done
	return 1
}

# Removes the appended PKCS#7 signature from every .ko under $1.
strip_module_signatures() {
	python3 - "$1" <<'PYEOF'
import os, struct, sys
MAGIC = b"~Module signature appended~\n"
n = 0
for dirpath, _, files in os.walk(sys.argv[1]):
    for name in files:
        if not name.endswith(".ko"):
            continue
        path = os.path.join(dirpath, name)
        with open(path, "r+b") as f:
            size = f.seek(0, 2)
            if size < len(MAGIC) + 12:
                continue
            f.seek(size - len(MAGIC) - 12)
            tail = f.read()
            if not tail.endswith(MAGIC):
                continue
            signer_len, key_id_len = tail[3], tail[4]
            (sig_len,) = struct.unpack(">I", tail[8:12])
            new = size - len(MAGIC) - 12 - sig_len - signer_len - key_id_len
            if new > 0:
                f.truncate(new)
                n += 1
print("[image] stripped %d module signatures" % n)
PYEOF
}

build_entry() {
	local t0 t1
	TMP=$(mktemp -d "$CACHE/tmp.XXXXXX")
	local w=$TMP/entry
	mkdir -p "$w"

	# ---- kernel
	apt-cache show --no-all-versions "$KERNEL_META" >/dev/null 2>&1 || apt_update_once
	local kpkg kpkgver
	kpkg=$(apt-cache show --no-all-versions "$KERNEL_META" | sed -n 's/^Depends: //p' | head -n1 |
		tr ',' '\n' | sed 's/^ *//; s/ .*//' | grep -E '^linux-image-[0-9]' | head -n1)
	[ -n "$kpkg" ] || die "cannot resolve the kernel package behind $KERNEL_META"
	kpkgver=$(apt-cache show --no-all-versions "$kpkg" | sed -n 's/^Version: //p' | head -n1)
	log "downloading $kpkg $kpkgver"
	mkdir -p "$TMP/deb" "$TMP/kernel"
	(cd "$TMP/deb" && apt-get download -qq -o APT::Sandbox::User=root "$kpkg" >/dev/null) ||
		die "apt-get download $kpkg failed"
	dpkg-deb -x "$TMP"/deb/"$kpkg"_*.deb "$TMP/kernel"
	local kver
	kver=$(ls "$TMP/kernel/lib/modules")
	[ -n "$kver" ] && [ "$(echo "$kver" | wc -l)" = 1 ] || die "unexpected module tree in $kpkg"
	log "extracting the PVH vmlinux from vmlinuz-$kver"
	extract_vmlinux "$TMP/kernel/boot/vmlinuz-$kver" "$w/vmlinux" || die "no ELF kernel found in vmlinuz-$kver"
	if command -v readelf >/dev/null && ! readelf -n "$w/vmlinux" 2>/dev/null | grep -q Xen; then
		log "warning: no Xen/PVH ELF note in vmlinux; QEMU cannot direct-boot it"
	fi
	# Module signatures cost an RSA verification and a hash of the whole
	# module on every load (~0.1-0.2 s of boot under TCG for the initrd
	# set). Nothing enforces them (no lockdown, guest root can load
	# anything anyway), so strip them; the kernel only logs a taint note.
	log "stripping module signatures"
	strip_module_signatures "$TMP/kernel/lib/modules/$kver"
	depmod -b "$TMP/kernel" "$kver"

	# ---- initrd
	log "building initrd ($INITRD_COMPRESS)"
	local ird=$TMP/initrd mods m
	mkdir -p "$ird"/{dev,proc,sys,newroot,lib/modules}
	mknod -m 0600 "$ird/dev/console" c 5 1
	gcc -static -Os -Wall -Wextra -Werror -o "$TMP/init" "$HERE/init.c" || die "cannot compile init.c"
	strip "$TMP/init"
	install -m 0755 "$TMP/init" "$ird/init"
	mods=$(resolve_modules "$INITRD_MODULES" "$TMP/kernel" "$kver")
	: >"$ird/modules.list"
	for m in $mods; do
		cp "$(modinfo -b "$TMP/kernel" -k "$kver" -F filename "$m")" "$ird/lib/modules/$m.ko"
		echo "$m" >>"$ird/modules.list"
	done
	log "initrd modules: $(echo $mods)"
	(cd "$ird" && find . -mindepth 1 | LC_ALL=C sort |
		cpio -o -H newc -R 0:0 --reproducible --quiet) >"$TMP/initrd.cpio"
	case "$INITRD_COMPRESS" in
	none) mv "$TMP/initrd.cpio" "$w/initrd.img" ;;
	gzip) gzip -9n <"$TMP/initrd.cpio" >"$w/initrd.img" ;;
	*) die "bad INITRD_COMPRESS" ;;
	esac

	# ---- root filesystem
	local pkgs root=$TMP/root
	pkgs=$(sed 's/#.*//' "$HERE/packages" | tr -s ' \t\n' '\n' | grep -v '^$' | paste -sd, -)
	log "mmdebstrap $SUITE minbase + $pkgs (about a minute)"
	t0=$(date +%s)
	mmdebstrap --quiet --variant=minbase --include="$pkgs" \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--dpkgopt='path-include=/usr/share/locale/locale.alias' \
		--dpkgopt='path-exclude=/usr/share/lintian/*' \
		"$SUITE" "$root" >"$TMP/mmdebstrap.log" 2>&1 ||
		{ tail -n 30 "$TMP/mmdebstrap.log" >&2; die "mmdebstrap failed"; }
	t1=$(date +%s)
	log "mmdebstrap done in $((t1 - t0))s"

	log "adding the module tree of $kver"
	mkdir -p "$root/lib/modules"
	cp -a "$TMP/kernel/lib/modules/$kver" "$root/lib/modules/"
	depmod -b "$root" "$kver"

	# Trim what a throwaway VM never uses.
	rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
		"$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old "$root"/var/log/* "$root"/tmp/* 2>/dev/null || true
	mkdir -p "$root/var/lib/apt/lists/partial" "$root/var/log"
	echo sandbox >"$root/etc/hostname"
	cat >"$root/etc/hosts" <<'EOF'
127.0.0.1	localhost
127.0.1.1	sandbox
::1	localhost ip6-localhost ip6-loopback
ff02::1	ip6-allnodes
ff02::2	ip6-allrouters
EOF
	# No host resolver configuration in the image: the agent owns DNS.
	rm -f "$root/etc/resolv.conf"
	: >"$root/etc/resolv.conf"
	cat >"$root/etc/fstab" <<'EOF'
# The root filesystem is mounted by the libsandbox initramfs.
EOF
	# The agent is injected per output; make sure its directory exists.
	local agent_dir
	agent_dir=$(dirname "$AGENT_GUEST_PATH")
	mkdir -p "$root$agent_dir"
	# /sbin is a symlink to usr/sbin in a merged-/usr root: debugfs needs
	# the real directory.
	root=$(realpath "$root")
	agent_dir=$(realpath "$root$agent_dir")
	case "$agent_dir" in "$root"/*) agent_dir=${agent_dir#"$root"} ;; *) die "bad agent directory" ;; esac
	[ ! -e "$root$AGENT_GUEST_PATH" ] || die "$AGENT_GUEST_PATH already exists in the root filesystem"

	local content_mib size_mib
	content_mib=$(du -s --block-size=1M "$root" | cut -f1)
	# content + ~12% for ext4 metadata and inode tables + 64 MiB journal + free space
	size_mib=$((content_mib + content_mib / 8 + 64 + FREE_MIB))
	log "making ext4 base image (${content_mib} MiB content, ${size_mib} MiB image)"
	mke2fs -q -F -t ext4 -d "$root" -L sandbox-root -m 0 -i 8192 \
		-E lazy_itable_init=0,lazy_journal_init=0 \
		"$w/base.ext4" "${size_mib}M" >/dev/null || die "mke2fs failed"

	cat >"$w/info" <<EOF
kernel_package=$kpkg
kernel_package_version=$kpkgver
kernel_version=$kver
agent_dir=$agent_dir
EOF
	rm -rf --one-file-system "$root"
	mv "$w" "$ENTRY"
	rm -rf --one-file-system "$TMP"
	TMP=
}

if [ -f "$ENTRY/info" ] && [ -f "$ENTRY/base.ext4" ]; then
	log "cache hit: $ENTRY"
else
	log "cache miss for recipe ${RECIPE_HASH:0:12}: building into $ENTRY"
	build_entry
	# Keep the three most recently used entries.
	ls -1dt "$CACHE"/*/ 2>/dev/null | tail -n +4 | while read -r old; do
		log "pruning old cache entry $old"
		rm -rf --one-file-system "$old"
	done
fi
touch "$ENTRY"

KPKG=$(manifest_get kernel_package "$ENTRY/info")
KPKGVER=$(manifest_get kernel_package_version "$ENTRY/info")
KVER=$(manifest_get kernel_version "$ENTRY/info")
AGENT_DIR=$(manifest_get agent_dir "$ENTRY/info")

# ------------------------------------------------------------ assemble DIR
log "assembling $OUT"
rm -f "$OUT/manifest"
chmod 0755 "$OUT"
cp --sparse=always "$ENTRY/base.ext4" "$OUT/.rootfs.img.tmp"
debugfs -w -f - "$OUT/.rootfs.img.tmp" >/dev/null 2>&1 <<EOF
cd $AGENT_DIR
write $AGENT $(basename "$AGENT_GUEST_PATH")
set_inode_field $(basename "$AGENT_GUEST_PATH") mode 0100755
set_inode_field $(basename "$AGENT_GUEST_PATH") uid 0
set_inode_field $(basename "$AGENT_GUEST_PATH") gid 0
EOF
# debugfs does not fail on a failed command: check the result.
debugfs -R "dump $AGENT_DIR/$(basename "$AGENT_GUEST_PATH") $OUT/.agent.check" "$OUT/.rootfs.img.tmp" >/dev/null 2>&1 || true
if ! cmp -s "$AGENT" "$OUT/.agent.check"; then
	rm -f "$OUT/.agent.check"
	die "could not write the agent into the root filesystem"
fi
rm -f "$OUT/.agent.check"
debugfs -R "stat $AGENT_DIR/$(basename "$AGENT_GUEST_PATH")" "$OUT/.rootfs.img.tmp" 2>/dev/null |
	grep -q 'Mode:  0755' || die "agent mode is not 0755 in the root filesystem"
log "agent installed at $AGENT_GUEST_PATH"

for f in vmlinux initrd.img; do
	if [ -f "$OUT/$f" ] && cmp -s "$ENTRY/$f" "$OUT/$f"; then continue; fi
	cp "$ENTRY/$f" "$OUT/.$f.tmp"
	mv -f "$OUT/.$f.tmp" "$OUT/$f"
done
mv -f "$OUT/.rootfs.img.tmp" "$OUT/rootfs.img"
chmod 0644 "$OUT/vmlinux" "$OUT/initrd.img" "$OUT/rootfs.img"

log "hashing"
{
	echo "format=$FORMAT_VERSION"
	echo "arch=x86_64"
	echo "recipe_hash=$RECIPE_HASH"
	echo "suite=$SUITE"
	echo "kernel_package=$KPKG"
	echo "kernel_package_version=$KPKGVER"
	echo "kernel_version=$KVER"
	for kv in kernel:vmlinux initrd:initrd.img rootfs:rootfs.img; do
		k=${kv%%:*} f=${kv#*:}
		echo "$k=$f"
		echo "${k}_size=$(fsize "$OUT/$f")"
		echo "${k}_sha256=$(sha256 "$OUT/$f")"
	done
	echo "kernel_format=elf-pvh"
	echo "initrd_format=cpio$([ "$INITRD_COMPRESS" = gzip ] && echo .gz || true)"
	echo "rootfs_format=raw-ext4"
	echo "root_device=/dev/vda"
	echo "agent_path=$AGENT_GUEST_PATH"
	echo "agent_sha256=$AGENT_SHA"
	echo "agent_port=org.libsandbox.agent"
	echo "cmdline=$CMDLINE"
	echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$OUT/.manifest.tmp"
chmod 0644 "$OUT/.manifest.tmp"
mv -f "$OUT/.manifest.tmp" "$OUT/manifest"

# QEMU runs as libvirt-qemu: every parent directory must be searchable.
d=$OUT
while [ "$d" != / ]; do
	if [ "$(($(stat -c %a "$d" | sed 's/^/0/') & 1))" = 0 ]; then
		log "warning: $d is not searchable by other users; libvirt-qemu cannot read the image"
		break
	fi
	d=$(dirname "$d")
done

log "done in $(elapsed)s: $OUT (kernel $KVER, rootfs $(($(fsize "$OUT/rootfs.img") / 1048576)) MiB, recipe ${RECIPE_HASH:0:12})"
