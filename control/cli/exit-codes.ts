import { RolloutPhase } from '../../proto/gen/bpfleet/v1/rollout.js';

/** Documented exit codes of the `bpfleet` CLI (docs/CLI.md "Exit codes"); pipelines gate on them. */
export const EXIT = {
  OK: 0,
  /** The server could not be reached, or an unexpected error. */
  ERROR: 1,
  /** Bad flags, a bad file, or input the server refused as invalid. */
  USAGE: 2,
  /** The rollout was rolled back (e.g. the canary failed analysis). */
  ROLLED_BACK: 3,
  /** The rollout failed and was halted, or was aborted. */
  FAILED: 4,
  /** --timeout passed before the rollout finished. */
  TIMEOUT: 5,
  /** The rollout is paused and waits for `bpfleet rollout resume`. */
  PAUSED: 6,
  /** Something named does not exist (module, rollout, host). */
  NOT_FOUND: 7,
  /** The API recorded an operator's verb, but the controller did not apply it (it says why). */
  NOT_APPLIED: 8,
} as const;

/** Exit code for a rollout that ended (or stopped moving) in `phase`. */
export function exitCodeFor(phase: RolloutPhase | undefined): number {
  switch (phase) {
    case RolloutPhase.ROLLOUT_PHASE_SUCCEEDED: return EXIT.OK;
    case RolloutPhase.ROLLOUT_PHASE_ROLLED_BACK: return EXIT.ROLLED_BACK;
    case RolloutPhase.ROLLOUT_PHASE_PAUSED: return EXIT.PAUSED;
    default: return EXIT.FAILED;
  }
}
