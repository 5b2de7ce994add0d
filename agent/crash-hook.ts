/**
 * TEST HOOK, for the crash-safety e2e test only: `BPFLEET_CRASH_AT=<point>` in the agent's
 * environment makes the agent SIGKILL itself at that point of a swap (an install that
 * replaces a running program; a first attach never triggers it). The variable is read once,
 * at agent start. Nothing else may set it: a production agent never has it.
 *
 *   before-load    object opened, pins dirs made; the verifier has not run   → old runs
 *   after-load     loaded, new program and its card pinned; link not updated → old runs
 *   after-swap     bpf_link_update done; replaced program still pinned       → new runs
 *   before-report  install done; etcd not told, Apply not answered           → new runs
 */
import { BpfleetError } from '../common/errors.js';

export const SWAP_POINTS = ['before-load', 'after-load', 'after-swap', 'before-report'] as const;
export type SwapPoint = (typeof SWAP_POINTS)[number];

/** Called at each point of a swap; a no-op unless the crash hook is armed. */
export type SwapCheckpoint = (point: SwapPoint) => void;

export const CRASH_ENV = 'BPFLEET_CRASH_AT';

export function crashHookFromEnv(env: NodeJS.ProcessEnv = process.env): SwapCheckpoint | undefined {
  const value = env[CRASH_ENV];
  if (!value) return undefined;
  if (!(SWAP_POINTS as readonly string[]).includes(value)) {
    throw new BpfleetError('INVALID_ARGUMENT', 'USAGE', `${CRASH_ENV}=${value}: expected one of ${SWAP_POINTS.join(', ')}`);
  }
  return (point) => {
    if (point !== value) return;
    // Synchronous on a pipe or file, so the line is out before the signal lands.
    process.stderr.write(`bpfleet-agent: ${CRASH_ENV}=${point}: test hook kills the agent now\n`);
    process.kill(process.pid, 'SIGKILL');
  };
}
