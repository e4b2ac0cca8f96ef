#!/usr/bin/env bash
# Runs every fuzz target of the repository (func FuzzX in a _test.go file)
# for a bounded time each: FUZZTIME (default 20s). A failing input is
# written under the package's testdata/fuzz/ and fails the run; commit it
# with the fix, and it runs as a plain test from then on.
# Usage: bash .ci/fuzz.sh   (from the repository root)
set -euo pipefail
fuzztime="${FUZZTIME:-20s}"
git grep -n -E '^func Fuzz[A-Za-z0-9_]*\(' -- '*_test.go' |
	sed -E 's/^([^:]+):[0-9]+:func (Fuzz[A-Za-z0-9_]*)\(.*/\1 \2/' |
	while read -r file name; do
		pkg="./$(dirname "$file")"
		t="$fuzztime"
		# Each input of the differential target runs against three real
		# backends: its seed corpus alone takes some 40 s to replay, and a
		# mutated script the harness waits on for long is reported as a
		# hung worker. Longer runs are for a person watching
		# (FUZZTIME_DIFFERENTIAL=10m).
		[ "$name" = FuzzDifferential ] && t="${FUZZTIME_DIFFERENTIAL:-45s}"
		echo "ci: fuzz $pkg $name ($t)"
		corpus="$(dirname "$file")/testdata/fuzz/$name"
		before="$(ls "$corpus" 2>/dev/null | sort || true)"
		out="$(mktemp)"
		if go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "$pkg" 2>&1 | tee "$out"; then
			rm -f "$out"
			continue
		fi
		after="$(ls "$corpus" 2>/dev/null | sort || true)"
		# Go 1.26's fuzzing coordinator can report its own -fuzztime
		# deadline as a failure when a starved worker answers late
		# (go.dev/issue/75804, fixed in Go 1.27): no input is written and
		# the only error is the bare deadline. Anything else fails.
		if [ "$before" = "$after" ] && grep -q '^    context deadline exceeded$' "$out" &&
			[ "$(grep -c -E '^\s+[^ ]' "$out" | head -1)" -le 1 ]; then
			echo "ci: $name: the coordinator's own deadline (go.dev/issue/75804), no failing input: not a finding"
			rm -f "$out"
			continue
		fi
		rm -f "$out"
		exit 1
	done
