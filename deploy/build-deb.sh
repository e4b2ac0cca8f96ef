#!/usr/bin/env bash
# Build the imapwarden Debian package with nfpm (deploy/nfpm.yaml).
#
#   deploy/build-deb.sh [OUTDIR]          # default OUTDIR: dist
#
# Environment:
#   IMAPWARDEN_VERSION  package version; default: from "git describe", else 0.0.0~dev
#   GOARCH              target architecture; default: go env GOARCH
#   IMAPWARDEN_BINARY   ship this binary instead of building one (it must be
#                       static, built as below)
#   NFPM                nfpm command; default: go run ...nfpm@v2.45.2
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:-dist}"
mkdir -p "$out"

if [ -z "${IMAPWARDEN_VERSION:-}" ]; then
	described="$(git describe --tags --match 'v[0-9]*' 2>/dev/null || true)"
	if [ -n "$described" ]; then
		# v1.2.3-4-gabcdef -> 1.2.3+4.gabcdef (sorts after 1.2.3 in dpkg)
		IMAPWARDEN_VERSION="$(printf '%s' "${described#v}" | sed -E 's/-([0-9]+)-(g[0-9a-f]+)$/+\1.\2/')"
	else
		IMAPWARDEN_VERSION="0.0.0~dev"
	fi
fi
GOARCH="${GOARCH:-$(go env GOARCH)}"
export IMAPWARDEN_VERSION GOARCH

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

# The commit and its date, which "imapwarden version" shows.
REVISION="$(git rev-parse HEAD 2>/dev/null || true)"
REVISION_DATE="$(git log -1 --format=%cI 2>/dev/null || true)"

if [ -z "${IMAPWARDEN_BINARY:-}" ]; then
	# The same flags as deploy/Dockerfile: static, reproducible, stripped.
	CGO_ENABLED=0 GOOS=linux go build -trimpath \
		-ldflags "-s -w -X main.version=${IMAPWARDEN_VERSION} -X main.commit=${REVISION} -X main.date=${REVISION_DATE}" \
		-o "$stage/imapwarden" ./cmd/imapwarden
	IMAPWARDEN_BINARY="$stage/imapwarden"
fi
export IMAPWARDEN_BINARY

# The policies that ship, if the checkout has any.
mkdir -p "$stage/policies"
if [ -d policies ]; then
	cp -R policies/. "$stage/policies/"
fi
export IMAPWARDEN_POLICIES="$stage/policies"

nfpm="${NFPM:-go run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2}"
# shellcheck disable=SC2086 # NFPM may be a command with arguments
$nfpm pkg --config deploy/nfpm.yaml --packager deb --target "$out/"
