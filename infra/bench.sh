#!/usr/bin/env bash
# Every benchmark, one after another (they share 2 cores: never run them in parallel). Each
# writes its numbers to bench/results/<name>.json; bench/README.md says what they measure.
set -euo pipefail
cd "$(dirname "$0")/.."

bash infra/bootstrap.sh
export BPFLEET_LOG_LEVEL="${BPFLEET_LOG_LEVEL:-warn}"

npx tsx bench/swap.ts
npx tsx bench/apply.ts
