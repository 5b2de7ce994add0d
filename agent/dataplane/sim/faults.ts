import type { ModuleArtifact } from '../driver.js';

/** Where in an install the simulated agent process dies. */
export type CrashPoint = 'before-load' | 'after-load' | 'after-swap';

/** Faults a SimDriver injects; read at each step of an install, so they can change mid-test. */
export interface SimFaults {
  /** How long a load takes, standing in for the verifier and the JIT. */
  loadDelayMs?: number;
  /** true, or the verifier's complaint: the load fails with VERIFIER_REJECTED. */
  verifierReject?: (artifact: ModuleArtifact) => boolean | string;
  crashMidSwap?: CrashPoint;
}

/**
 * The simulated agent process died. The host keeps whatever the kernel had at that point;
 * the driver that crashed refuses all further calls, so a test must restart the agent with
 * a new SimDriver over the same SimHostState, as a real one would.
 */
export class SimCrash extends Error {
  override readonly name = 'SimCrash';
  constructor(
    readonly point: CrashPoint,
    readonly attachment: string,
  ) {
    super(`sim agent crashed ${point} on ${attachment}`);
  }
}
