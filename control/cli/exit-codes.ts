/**
 * The CLI's exit codes, alone in a module without imports: `bpfleet --help` loads it and must
 * stay quick (the mapping from outcomes to codes is in exit-for.ts).
 */
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
