import { BpfleetError } from '../../common/errors.js';
import { RolloutPhase } from '../../proto/gen/bpfleet/v1/rollout.js';
import { EXIT } from './exit-codes.js';

/** Exit code for a rollout that ended (or stopped moving) in `phase`. */
export function exitCodeFor(phase: RolloutPhase | undefined): number {
  switch (phase) {
    case RolloutPhase.ROLLOUT_PHASE_SUCCEEDED: return EXIT.OK;
    case RolloutPhase.ROLLOUT_PHASE_ROLLED_BACK: return EXIT.ROLLED_BACK;
    case RolloutPhase.ROLLOUT_PHASE_PAUSED: return EXIT.PAUSED;
    default: return EXIT.FAILED;
  }
}

/** Exit code for a command that failed with `err` (see exit-codes.ts). */
export function exitCodeForError(err: unknown): number {
  if (!(err instanceof BpfleetError)) return EXIT.ERROR;
  if (err.code === 'INVALID_ARGUMENT' || err.code === 'ALREADY_EXISTS' || err.code === 'FAILED_PRECONDITION') return EXIT.USAGE;
  if (err.code === 'NOT_FOUND') return EXIT.NOT_FOUND;
  return EXIT.ERROR;
}
