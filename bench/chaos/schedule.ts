/**
 * The chaos run's seeded schedule: which fault at which time, and which rollouts in which
 * order with which operator verbs. Pure: the same seed gives the same schedule, so a run
 * that found a bug can be replayed (`npm run chaos -- --seed <n>`).
 */

/** The kinds of fault the run injects (bench/chaos/faults.ts has one injector per kind). */
export const FAULT_KINDS = [
  'kill-control', 'kill-agent', 'kill-sim-pool', 'kill-etcd-member', 'kill-nats-node',
  'delete-interface', 'etcd-compaction', 'malformed-etcd', 'malformed-report', 'oversize-burst',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface ScheduledFault {
  /** Milliseconds after the run's start. */
  atMs: number;
  kind: FaultKind;
  /** A uniform number in [0, 1) the injector turns into its target (which replica, which host). */
  pick: number;
}

/** What the operator does to one rollout; the good/bad version is chosen with it. */
export const ROLLOUT_SCENARIOS = ['plain', 'pause-resume', 'promote', 'abort', 'undo'] as const;
export type RolloutScenario = (typeof ROLLOUT_SCENARIOS)[number];

export interface PlannedRollout {
  /** true: the version that drops every packet; its canary must fail. */
  bad: boolean;
  scenario: RolloutScenario;
}

/** mulberry32: a small, fast 32-bit PRNG; numbers in [0, 1). Same seed, same sequence. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface FaultScheduleOptions {
  seed: number;
  /** Faults are scheduled in [startMs, durationMs). */
  durationMs: number;
  /** Mean gap between faults, ms; gaps are uniform in [meanGapMs/2, 3·meanGapMs/2]. */
  meanGapMs: number;
  /** Quiet time at the start (the first rollout), ms. Default 0. */
  startMs?: number;
  /** Kinds to draw from, uniformly; default all. */
  kinds?: readonly FaultKind[];
}

/**
 * Faults in time order, each kind drawn uniformly from `kinds`. Throws a RangeError for a
 * non-positive duration or gap, or an empty kind list.
 */
export function faultSchedule(o: FaultScheduleOptions): ScheduledFault[] {
  const kinds = o.kinds ?? FAULT_KINDS;
  if (!(o.durationMs > 0) || !(o.meanGapMs > 0) || kinds.length === 0) {
    throw new RangeError(`fault schedule: duration ${o.durationMs} ms, mean gap ${o.meanGapMs} ms, ${kinds.length} kinds; all must be positive`);
  }
  const rand = prng(o.seed);
  const out: ScheduledFault[] = [];
  let t = (o.startMs ?? 0) + o.meanGapMs * (0.5 + rand());
  while (t < o.durationMs) {
    out.push({ atMs: Math.round(t), kind: kinds[Math.floor(rand() * kinds.length)]!, pick: rand() });
    t += o.meanGapMs * (0.5 + rand());
  }
  return out;
}

/**
 * An endless sequence of rollouts for `seed` (a different stream from the faults'): about one
 * in three bad, each with a scenario drawn uniformly. A bad rollout is never 'undo' (there is
 * nothing to undo after a rollback) nor 'promote' (an operator's promote skips the analysis
 * that must catch it): those become 'plain'.
 */
export function* rolloutPlan(seed: number): Generator<PlannedRollout> {
  const rand = prng(seed ^ 0x5bd1e995);
  for (;;) {
    const bad = rand() < 1 / 3;
    let scenario = ROLLOUT_SCENARIOS[Math.floor(rand() * ROLLOUT_SCENARIOS.length)]!;
    if (bad && (scenario === 'undo' || scenario === 'promote')) scenario = 'plain';
    yield { bad, scenario };
  }
}
