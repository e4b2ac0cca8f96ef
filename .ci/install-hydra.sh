#!/usr/bin/env bash
# Builds ORY Hydra v2.3.0, the OAuth 2.0 / OpenID Connect server that
# internal/hydratest starts for the tests of the oauth2 authenticator, into
# $IMAPWARDEN_TOOLS/hydra-v2.3.0/hydra (default /opt/imapwarden-tools).
#
# Hydra is a Go module on the module proxy, but `go install ...@v2.3.0`
# refuses it (its go.mod has replace directives), and its replacement for
# github.com/ory/hydra-client-go/v2 points at a nested module that the
# module zip leaves out. So the module is downloaded, copied to a scratch
# directory, that one replace is dropped (the published hydra-client-go
# v2.2.1 it names is used instead) and it is built with cgo and the sqlite
# tag, which DSN=memory needs.
#
# Idempotent: when the binary exists it only checks it and returns.
# Usage: bash .ci/install-hydra.sh
set -euo pipefail

version=v2.3.0
root="${IMAPWARDEN_TOOLS:-/opt/imapwarden-tools}"
dest="$root/hydra-$version/hydra"
log() { printf 'install-hydra: %s\n' "$*"; }

if [ -x "$dest" ] && "$dest" version >/dev/null 2>&1; then
	log "already built: $dest"
	exit 0
fi
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
log "go mod download github.com/ory/hydra/v2@$version"
dir="$(cd "$scratch" && go mod download -json "github.com/ory/hydra/v2@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -n "$dir" ] && [ -f "$dir/go.mod" ] || { echo "install-hydra: download failed" >&2; exit 1; }
cp -r "$dir/." "$scratch/src"
chmod -R u+w "$scratch/src"
cd "$scratch/src"
go mod edit -dropreplace github.com/ory/hydra-client-go/v2
log "go build (cgo, sqlite): a few minutes the first time"
mkdir -p "$(dirname "$dest")"
CGO_ENABLED=1 GOFLAGS=-mod=mod go build -trimpath -tags sqlite,sqlite_omit_load_extension -o "$dest.tmp" .
mv "$dest.tmp" "$dest"
log "built $dest"
