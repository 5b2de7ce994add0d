/**
 * The rules of draining a host, as pure functions: which rollouts hold a host (and so refuse
 * or delay its drain), which removals a drain still has to write, and what a drain's state
 * becomes after one look at the host. The API (control/api/day2.ts) and the leader's drainer
 * (control/day2/drainer.ts) both decide by them.
 */
import type { Intent } from '../../proto/gen/bpfleet/v1/agent.js';
import { DrainState, type HostDrain } from '../../proto/gen/bpfleet/v1/control.js';
import { RolloutPhase, type Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import { isFinal } from '../rollout/vocabulary.js';

/** What runs on one attachment of the host, as its agent last reported it. */
export interface RunningProgram {
  attachment: string;
  /** `name@version`, for messages. */
  module: string;
  digest: string;
}

/**
 * The unfinished rollouts that hold `host`, by id: those whose plan includes it (whatever
 * their phase: a paused or rolling-back rollout still owns its hosts), and those not yet
 * planned (PENDING, no hosts) whose selector matches `labels` (null: the host is not
 * registered, so no selector can pick it).
 */
export function rolloutsHolding(host: string, labels: Readonly<Record<string, string>> | null, rollouts: readonly Rollout[]): string[] {
  return rollouts.filter((r) => {
    if (isFinal(r)) return false;
    const status = r.status;
    const planned = (status?.hosts.length ?? 0) > 0;
    if (planned) return status!.hosts.some((h) => h.host === host);
    const pending = !status || status.phase === RolloutPhase.ROLLOUT_PHASE_PENDING || status.phase === RolloutPhase.ROLLOUT_PHASE_UNSPECIFIED;
    return pending && labels !== null && Object.entries(r.spec?.selector ?? {}).every(([k, v]) => labels[k] === v);
  }).map((r) => r.id);
}

/**
 * The removals still to write: one per attachment that runs a program, unless its intent
 * already asks to remove exactly that program (then writing it again would only bump its
 * generation). A removal is a compare-and-swap on the agent: it detaches only `digest`.
 */
export function removalsNeeded(running: readonly RunningProgram[], intents: ReadonlyMap<string, Intent>): RunningProgram[] {
  return running.filter((p) => {
    const intent = intents.get(p.attachment);
    return !(intent && !intent.module?.digest && intent.expectedDigest === p.digest);
  });
}

/** What one look at a draining host decides. */
export interface DrainStep {
  /** The drain as it should be stored; the same object when nothing changed. */
  drain: HostDrain;
  /** Removal intents to write and apply. */
  remove: RunningProgram[];
  /** Delete the host's registration, observed state and intents (decommission). */
  forget: boolean;
}

/** What the drainer sees of the host. */
export interface HostLook {
  registered: boolean;
  running: readonly RunningProgram[];
  /** Ids of the unfinished rollouts that hold the host (rolloutsHolding). */
  holding: readonly string[];
  intents: ReadonlyMap<string, Intent>;
  now: Date;
}

/**
 * The next state of `drain`:
 * - a rollout holds the host: DRAINING, nothing removed (the rollout's own applies and
 *   rollback must not race removals), the message names the rollout;
 * - a decommission whose host runs nothing or is not registered (its agent gone: nobody
 *   could remove anything): forget the host, DECOMMISSIONED;
 * - programs run: DRAINING, their removals written (the agent applies them now, or from its
 *   intents when it comes back);
 * - nothing runs: DRAINED;
 * - a DECOMMISSIONED host registered again: an ordinary drain of it (it is not forgotten
 *   again under its running agent), until UndrainHost.
 */
export function drainStep(drain: HostDrain, look: HostLook): DrainStep {
  const next = (state: DrainState, message: string, extra: Partial<HostDrain> = {}): HostDrain => {
    const candidate = { ...drain, state, message, ...extra };
    const same = candidate.state === drain.state && candidate.message === drain.message && candidate.decommission === drain.decommission && candidate.drainedAt === drain.drainedAt;
    return same ? drain : candidate;
  };
  if (drain.state === DrainState.DRAIN_STATE_DECOMMISSIONED) {
    if (!look.registered) return { drain, remove: [], forget: false };
    drain = { ...drain, decommission: false, state: DrainState.DRAIN_STATE_DRAINING, drainedAt: '', message: 'registered again after its decommission: kept drained until `bpfleet hosts undrain`' };
  }
  if (look.holding.length) {
    return { drain: next(DrainState.DRAIN_STATE_DRAINING, `waiting for rollout ${look.holding.join(', ')} to finish`, { drainedAt: '' }), remove: [], forget: false };
  }
  if (drain.decommission && (!look.registered || !look.running.length)) {
    // An agent that is gone cannot remove anything; its records go now, and if it ever comes
    // back the drain record (kept) has it drained again (above).
    const message = look.running.length ? 'not registered: forgotten; its programs stay in its kernel until an agent runs there again (it is then drained)' : 'runs nothing; registration, observed state and intents deleted';
    return { drain: next(DrainState.DRAIN_STATE_DECOMMISSIONED, message, { drainedAt: drain.drainedAt || look.now.toISOString() }), remove: [], forget: true };
  }
  if (look.running.length) {
    const what = look.running.map((p) => `${p.module} on ${p.attachment}`).join(', ');
    const message = look.registered ? `removing ${what}` : `not registered: ${what} will be removed when its agent comes back`;
    return { drain: next(DrainState.DRAIN_STATE_DRAINING, message, { drainedAt: '' }), remove: removalsNeeded(look.running, look.intents), forget: false };
  }
  const drainedAt = drain.state === DrainState.DRAIN_STATE_DRAINED && drain.drainedAt ? drain.drainedAt : look.now.toISOString();
  return { drain: next(DrainState.DRAIN_STATE_DRAINED, 'runs no bpfleet program', { drainedAt }), remove: [], forget: false };
}

/** Host names a drain record keeps out of new rollouts: every drain, whatever its state. */
export function drainedHosts(drains: readonly HostDrain[]): Set<string> {
  return new Set(drains.map((d) => d.host));
}

/** How far a drain has come (the generated enum's values are strings: never compare them directly). */
export function drainProgress(state: DrainState): number {
  return [DrainState.DRAIN_STATE_DRAINING, DrainState.DRAIN_STATE_DRAINED, DrainState.DRAIN_STATE_DECOMMISSIONED].indexOf(state);
}

/** The words of a drain state, for the CLI and messages. */
export function drainStateName(state: DrainState): string {
  switch (state) {
    case DrainState.DRAIN_STATE_DRAINING: return 'draining';
    case DrainState.DRAIN_STATE_DRAINED: return 'drained';
    case DrainState.DRAIN_STATE_DECOMMISSIONED: return 'decommissioned';
    default: return 'unknown';
  }
}
