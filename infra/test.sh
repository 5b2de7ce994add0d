#!/usr/bin/env bash
# The whole test suite, from a clean clone: installs what it needs (infra/bootstrap.sh),
# checks the generated protobuf code is current, type-checks, then runs every unit,
# integration and e2e test with node's test runner against real etcd, nats-server and the
# kernel. Extra arguments are passed to `node --test` (e.g. --test-name-pattern=canary).
set -euo pipefail
cd "$(dirname "$0")/.."

bash infra/bootstrap.sh

echo "test: type-check (tsc --noEmit)"
npx tsc --noEmit -p .

# Node 20's test runner does not expand globs itself.
mapfile -t files < <(find proto common control agent dev e2e infra bench -name '*.test.ts' -not -path '*/node_modules/*' 2>/dev/null | sort)
echo "test: running ${#files[@]} test files"
# One file at a time: the e2e files each bring up a fleet, and 2 cores are better spent on one.
exec node --import tsx --test --test-concurrency=1 --test-timeout=600000 --test-reporter=spec "$@" "${files[@]}"
