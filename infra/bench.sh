#!/usr/bin/env bash
# Every benchmark, one after another (they share 2 cores: never run them in parallel). Each
# writes its numbers to bench/results/<name>.json; bench/README.md says what they measure.
set -euo pipefail
cd "$(dirname "$0")/.."

bash infra/bootstrap.sh
export BPFLEET_LOG_LEVEL="${BPFLEET_LOG_LEVEL:-warn}"

npx tsx bench/swap.ts
npx tsx bench/apply.ts
npx tsx bench/tls.ts
npx tsx bench/fleet.ts
BPFLEET_BENCH_PROFILE=1 BPFLEET_BENCH_FLEET_SIZES=10000 npx tsx bench/fleet.ts
npx tsx bench/detect.ts
node --expose-gc --import tsx bench/ingest.ts
npx tsx bench/storage.ts
npx tsx bench/cli-start.ts
npx tsx bench/analysis.ts
