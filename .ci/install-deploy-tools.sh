#!/usr/bin/env bash
# Installs what the deploy/ tests (deploy/deploytest) need, as root on
# Debian, and builds the pinned Go tools once so that the tests find them in
# the build cache instead of compiling helm (minutes) inside the go test
# timeout.
#
#   - systemd: systemd-analyze verify and security, systemd-sysusers
#   - dpkg: dpkg-deb, dpkg -i and --purge of the package under test
#   - adduser: a dependency of the package (postinst falls back to it)
#   - openssl: postinst generates the self-signed certificate with it
#   - shellcheck: lints the package scripts and deploy/build-deb.sh
#   - util-linux: runuser, to validate the installed config as the service user
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi

packages=(systemd dpkg adduser openssl shellcheck util-linux)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	apt-get update
	apt-get install -y --no-install-recommends "${missing[@]}"
fi

# The same command and environment as needGoTool in
# deploy/deploytest/main_test.go, so that the test's build is a cache hit.
gobin="$(mktemp -d)"
trap 'rm -rf "$gobin"' EXIT
for module in helm.sh/helm/v3/cmd/helm@v3.22.0 github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2; do
	echo "install-deploy-tools: go install $module"
	(cd "$gobin" && GOBIN="$gobin/bin" CGO_ENABLED=0 GOFLAGS='' go install "$module")
done
