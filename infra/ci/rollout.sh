#!/usr/bin/env bash
# Continuous delivery of one eBPF module version, for any CI system: push the module, roll
# it out with `--wait`, and fail the pipeline unless the rollout succeeded. The rollout's
# summary (`bpfleet rollout get <id> -o json`) is written to a file whatever the outcome, for
# the pipeline to keep as an artifact.
#
#   infra/ci/rollout.sh <module-manifest.yaml> <rollout-spec.yaml>
#
# Environment:
#   BPFLEET_SERVER     control plane address (the CLI's own default when unset)
#   BPFLEET            command that runs the CLI (default "bpfleet"; e.g. "node bin/bpfleet.mjs")
#   BPFLEET_SUMMARY    file the summary goes to (default rollout-summary.json)
#   BPFLEET_TIMEOUT    how long to wait for the outcome (default 30m; the CLI exits 5 after it)
#   BPFLEET_ACTOR      who the audit log names, e.g. "ci:<repository>#<run>"
#   OTEL_EXPORTER_OTLP_ENDPOINT, TRACEPARENT
#                      trace the rollout from this call on (docs/OBSERVABILITY.md)
#
# Exit status is the CLI's: 0 succeeded, 3 rolled back, 4 failed or aborted, 5 timed out,
# 6 paused; 1, 2 or 7 when the module or the rollout could not be pushed or started.
set -uo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 <module-manifest.yaml> <rollout-spec.yaml>" >&2
  exit 2
fi
manifest=$1
spec=$2
read -r -a bpfleet <<< "${BPFLEET:-bpfleet}"
summary=${BPFLEET_SUMMARY:-rollout-summary.json}
timeout=${BPFLEET_TIMEOUT:-30m}

annotate() {
  # GitHub Actions turns these lines into annotations on the run; elsewhere they are plain lines.
  if [ "${GITHUB_ACTIONS:-}" = true ]; then echo "::$1::$2"; else echo "$2"; fi
}

echo "== pushing $manifest"
"${bpfleet[@]}" module push "$manifest" || exit $?

echo "== rolling out $spec"
output=$(mktemp)
trap 'rm -f "$output"' EXIT
"${bpfleet[@]}" rollout create -f "$spec" --wait --timeout "$timeout" | tee "$output"
status=${PIPESTATUS[0]}

# The CLI's first line names the rollout: "rollout <id>: <module>@<version> on <attachment>".
id=$(sed -n '1s/^rollout \([^ :]*\): .*/\1/p' "$output")
if [ -z "$id" ]; then
  annotate error "the rollout of $spec did not start (bpfleet exit status $status)"
  exit $(( status == 0 ? 1 : status ))
fi

if ! "${bpfleet[@]}" rollout get "$id" -o json > "$summary"; then
  annotate warning "could not save the summary of rollout $id"
fi

case $status in
  0) echo "== rollout $id succeeded; summary in $summary" ;;
  3) annotate error "rollout $id was rolled back: the new version failed its checks; summary in $summary" ;;
  4) annotate error "rollout $id failed or was aborted; summary in $summary" ;;
  5) annotate error "rollout $id did not finish within $timeout; summary in $summary" ;;
  6) annotate error "rollout $id is paused and waits for an operator (bpfleet rollout resume $id)" ;;
  *) annotate error "following rollout $id failed (bpfleet exit status $status); summary in $summary" ;;
esac
exit "$status"
