#!/usr/bin/env bash
# Installs the Cyrus and Courier IMAP servers that internal/cyrustest and
# internal/couriertest start, without disturbing the system's Dovecot.
#
# Debian lets only one of dovecot-imapd, cyrus-imapd and courier-imap be
# installed (each Provides and Conflicts with imap-server), and the test suite
# needs dovecot-imapd. So this script never installs, removes or upgrades an
# IMAP server package: it installs, with apt-get, only ordinary libraries and
# helpers that conflict with nothing (checked with a simulation first), and
# unpacks the server packages themselves with `apt-get download` + `dpkg -x`
# into private trees that the fixtures run from:
#
#   $IMAPWARDEN_BACKENDS/cyrus    cyrus-common, cyrus-imapd, sasl2-bin
#   $IMAPWARDEN_BACKENDS/courier  courier-base, courier-imap
#
# (IMAPWARDEN_BACKENDS defaults to /opt/imapwarden-backends; the fixtures read
# the same variable.) No maintainer script of an unpacked package runs, so no
# service is set up or started, nothing is written under /etc by them, and
# nothing conflicts. courier-authlib and courier-authlib-userdb are installed
# normally: they conflict with nothing, start no service, and their module
# directory (/usr/lib/courier-authlib) is compiled into authdaemond.
#
# It also creates the system users the servers switch to, as the packages'
# own maintainer scripts would: cyrus (group mail) and courier.
#
# Run as root on Debian 12 (bookworm). Idempotent: when everything is in place
# it only checks and returns, without network access, in well under a second.
# Usage: bash .ci/install-backends.sh [--force]   (--force re-unpacks the trees)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

root="${IMAPWARDEN_BACKENDS:-/opt/imapwarden-backends}"
# Bump when the layout of the trees or the package lists change, so that an
# older installation is redone.
format=1
arch="$(dpkg --print-architecture)"
case "$arch" in
amd64) multiarch=x86_64-linux-gnu ;;
arm64) multiarch=aarch64-linux-gnu ;;
*) multiarch="$(dpkg-architecture -qDEB_HOST_MULTIARCH)" ;;
esac

# Server packages unpacked per tree (never installed).
cyrus_debs=(cyrus-common cyrus-imapd sasl2-bin)
courier_debs=(courier-base courier-imap)

# Installed with apt-get: the shared libraries the unpacked binaries load
# (found with ldd), courier-authlib (see above), gamin (the FAM server that
# Courier's enhanced IDLE needs), perl (makeuserdb) and util-linux (mount, in
# the fixtures' private mount namespaces).
system_pkgs=(
	# Cyrus
	libical3 libpcre3 libxapian30 libjansson4 libicu72 libpq5 libsqlite3-0
	libxml2 libwrap0 libssl3 libsasl2-2 libsasl2-modules libsasl2-modules-db
	libldap-2.5-0 libkrb5-3 libcom-err2 zlib1g libstdc++6
	# Courier
	courier-authlib courier-authlib-userdb libidn12 libcourier-unicode4
	libgamin0 gamin libgdbm6 libgnutls30 libidn2-0 libltdl7
	# tools
	perl util-linux ca-certificates
)

log() { printf 'install-backends: %s\n' "$*"; }
die() { printf 'install-backends: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
force=
[ "${1:-}" = "--force" ] && force=1

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# stamp_ok TREE: the tree was completely unpacked by this version of the script.
stamp_ok() { [ -z "$force" ] && [ -f "$root/$1/.installed" ] && grep -qx "format=$format" "$root/$1/.installed"; }

missing_pkgs=()
for p in "${system_pkgs[@]}"; do
	installed "$p" || missing_pkgs+=("$p")
done
need_cyrus=; stamp_ok cyrus || need_cyrus=1
need_courier=; stamp_ok courier || need_courier=1
missing_users=()
for u in cyrus courier; do
	getent passwd "$u" >/dev/null || missing_users+=("$u")
done

if [ "${#missing_pkgs[@]}" -eq 0 ] && [ -z "$need_cyrus" ] && [ -z "$need_courier" ] && [ "${#missing_users[@]}" -eq 0 ] && [ -d /etc/courier ]; then
	log "already installed in $root ($(sed -n 's/^packages=//p' "$root/cyrus/.installed"); $(sed -n 's/^packages=//p' "$root/courier/.installed"))"
	exit 0
fi

updated=
apt_update() {
	if [ -z "$updated" ]; then
		log "apt-get update"
		apt-get update -qq
		updated=1
	fi
}

if [ "${#missing_pkgs[@]}" -gt 0 ]; then
	apt_update
	log "checking that installing ${missing_pkgs[*]} removes nothing"
	sim="$(apt-get install -s --no-install-recommends "${missing_pkgs[@]}")"
	if grep -E '^Remv ' <<<"$sim"; then
		die "installing those packages would remove the packages above; not doing it"
	fi
	if grep -E '^Inst (dovecot|cyrus-imapd|courier-imap)' <<<"$sim"; then
		die "installing those packages would replace an IMAP server; not doing it"
	fi
	log "apt-get install ${missing_pkgs[*]}"
	# Keep maintainer scripts from starting services (none of these packages
	# ships one today; this is a guard). Only a policy-rc.d we create is
	# removed afterwards.
	created_policy=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		created_policy=1
	fi
	status=0
	apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" || status=$?
	[ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d
	[ "$status" = 0 ] || die "apt-get install failed ($status)"
fi

# The users the servers switch to, created as the packages' maintainer
# scripts would (cyrus-common's postinst; courier-authlib's makes courier).
if ! getent passwd cyrus >/dev/null; then
	log "creating system user cyrus (group mail)"
	useradd --system --gid mail --home-dir /var/spool/cyrus --no-create-home \
		--shell /usr/sbin/nologin --comment "Cyrus Mailsystem User" cyrus
fi
if ! getent passwd courier >/dev/null; then
	log "creating system user courier"
	useradd --system --user-group --home-dir /var/lib/courier --no-create-home \
		--shell /usr/sbin/nologin courier
fi
# Courier's authdaemond and userdb module read fixed paths under /etc/courier;
# couriertest bind-mounts a private directory over it in a private mount
# namespace, and a bind mount needs an existing mount point. courier-base
# would own this directory (root:courier 0755); it stays empty.
if [ ! -d /etc/courier ]; then
	log "creating the empty mount point /etc/courier"
	install -d -o root -g courier -m 755 /etc/courier
fi

# unpack TREE DEB...: downloads the packages and unpacks them into a fresh
# $root/TREE, replacing the old tree only when everything worked.
unpack() {
	local tree="$1"; shift
	local work
	work="$(mktemp -d)"
	# apt-get download runs as _apt when it can write the directory.
	chmod 755 "$work"
	if getent passwd _apt >/dev/null; then chown _apt "$work"; fi
	log "apt-get download $* (for $root/$tree)"
	if ! (cd "$work" && apt-get download -qq "$@" 2>/dev/null); then
		# Stale or missing package lists: refresh once and retry.
		apt_update
		(cd "$work" && apt-get download -qq "$@")
	fi
	local new="$root/.$tree.new"
	rm -rf "$new"
	mkdir -p "$new"
	local versions=()
	for p in "$@"; do
		local deb
		deb="$(ls "$work/${p}_"*"_$arch.deb" 2>/dev/null || ls "$work/${p}_"*.deb)"
		log "dpkg -x $(basename "$deb") $root/$tree"
		dpkg -x "$deb" "$new"
		versions+=("$p=$(dpkg-deb -f "$deb" Version)")
	done
	rm -rf "$work"
	printf 'format=%s\npackages=%s\n' "$format" "${versions[*]}" >"$new/.installed.pending"
	# Swap in: the stamp is written last, so an interrupted run is redone.
	rm -rf "$root/$tree"
	mv "$new" "$root/$tree"
}

# check_libs TREE BINARY...: every shared library the binaries need resolves,
# with the tree's own library directory on LD_LIBRARY_PATH as the fixtures set it.
check_libs() {
	local tree="$1"; shift
	local libdir="$root/$tree/usr/lib/$multiarch:$root/$tree/usr/lib"
	local b out bad=
	for b in "$@"; do
		out="$(LD_LIBRARY_PATH="$libdir" ldd "$root/$tree/$b")" || die "ldd $root/$tree/$b failed"
		if grep -q 'not found' <<<"$out"; then
			printf '%s:\n%s\n' "$b" "$(grep 'not found' <<<"$out")" >&2
			bad=1
		fi
	done
	[ -z "$bad" ] || die "unresolved libraries in $root/$tree (add their packages to system_pkgs)"
}

finish() {
	local tree="$1"
	mv "$root/$tree/.installed.pending" "$root/$tree/.installed"
	log "$root/$tree: $(sed -n 's/^packages=//p' "$root/$tree/.installed")"
}

mkdir -p "$root"
chmod 755 "$root"
if [ -n "$need_cyrus" ]; then
	unpack cyrus "${cyrus_debs[@]}"
	check_libs cyrus usr/lib/cyrus/bin/master usr/lib/cyrus/bin/imapd usr/lib/cyrus/bin/idled \
		usr/lib/cyrus/bin/ctl_cyrusdb usr/sbin/saslpasswd2
	finish cyrus
fi
if [ -n "$need_courier" ]; then
	unpack courier "${courier_debs[@]}"
	check_libs courier usr/bin/imapd usr/lib/courier/courier/imaplogin usr/sbin/couriertcpd usr/bin/couriertls
	finish courier
fi
log "done: $root/cyrus and $root/courier"
