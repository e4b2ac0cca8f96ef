#!/usr/bin/env bash
# Installs redis-server (Debian's package; the same binary runs as a Sentinel
# with --sentinel and as a Cluster node) for the fleet tests of
# proxy/ratelimit, which start their own redis-server on a 127.0.0.1
# ephemeral port, in a temporary directory, without persistence, and stop it
# by PID. The system service is never needed: the package's postinst is kept
# from starting it (policy-rc.d), and if it runs anyway it is left alone.
#
# Run as root. Idempotent: when redis-server is installed it only checks and
# returns, without network access.
# Usage: bash .ci/install-redis.sh
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

log() { printf 'install-redis: %s\n' "$*"; }

if dpkg-query -W -f='${Status}' redis-server 2>/dev/null | grep -q 'install ok installed' &&
	command -v redis-server >/dev/null 2>&1; then
	log "already installed: $(redis-server --version | head -n1)"
	exit 0
fi

[ "$(id -u)" = 0 ] || { echo "install-redis: must run as root" >&2; exit 1; }

# Keep the package's maintainer scripts from starting the system service: the
# tests do not use it, and a start that fails (no systemd in a container)
# would fail the install. Only a policy-rc.d we create is removed afterwards.
created_policy=
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	created_policy=1
fi
status=0
{
	log "apt-get update"
	apt-get update -qq &&
		log "apt-get install redis-server" &&
		apt-get install -y -qq --no-install-recommends redis-server
} || status=$?
if [ -n "$created_policy" ]; then
	rm -f /usr/sbin/policy-rc.d
fi
[ "$status" = 0 ] || { echo "install-redis: apt-get failed ($status)" >&2; exit "$status"; }
log "installed: $(redis-server --version | head -n1)"
