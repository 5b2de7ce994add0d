#!/usr/bin/env bash
# The main job from a clean clone: install what is needed, then run the local fleet demo
# (infra/demo.ts). Ctrl-C tears everything down.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/bootstrap.sh
exec node --import tsx infra/demo.ts "$@"
