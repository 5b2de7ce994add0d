import YAML from 'yaml';
import { z } from 'zod';
import { parseAttachment } from '../../common/attachment.js';
import { BpfleetError } from '../../common/errors.js';
import { FIELD_BYTES, MAX_SELECTOR_ENTRIES } from '../../common/limits.js';
import {
  FailurePolicy,
  type RolloutSpec,
  type Step,
} from '../../proto/gen/bpfleet/v1/rollout.js';
import { DEFAULT_METHOD, METHOD_NAMES, methodName } from '../analysis/judge.js';
import { EXPECTED_METRIC, isMetric } from '../analysis/metric-registry.js';
import { formatDuration, parseDuration } from './duration.js';

/**
 * Bounds on a legal spec, so that none can overflow a timer, spin the controller or fill
 * etcd (the "Limits" table in docs/ARCHITECTURE.md). Every wait is one setTimeout, whose
 * longest delay is 2^31-1 ms (24.8 days): the longest bake, interval and staleAfter stay
 * well below it.
 */
export const SPEC_LIMITS = {
  steps: 64,
  /** One week. */
  bakeMs: 7 * 24 * 3_600_000,
  /** An analysis at most every 100 ms: faster only burns the controller. */
  minIntervalMs: 100,
  maxIntervalMs: 3_600_000,
  maxStaleAfterMs: 24 * 3_600_000,
  /** minSamples, inconclusiveLimit and failureLimit: each analysis is a record in the rollout's history. */
  analysisCount: 1000,
  metrics: 16,
  /** Hosts in a canary step or in maxUnavailable. */
  hosts: 1_000_000,
  /** A metric's max or maxIncrease. */
  metricLimit: 1e12,
} as const;

// 34 characters fit any legal duration ("604800000ms"); longer ones are refused unread.
const duration = z.string().max(32).refine((s) => parseDuration(s) !== null, {
  message: 'expected a duration such as "500ms", "30s", "5m"',
});
const durationWithin = (minMs: number, maxMs: number, what: string) => duration.refine((s) => {
  const ms = parseDuration(s) ?? minMs;
  return ms >= minMs && ms <= maxMs;
}, { message: `must be ${what}` });
// The wire form reads 0 as "unset", so a 0 written here would silently disable the check.
const limit = z.number().positive({ message: 'must be above 0 (leave it out for no limit)' }).max(SPEC_LIMITS.metricLimit);

const count = z.number().int().positive().max(SPEC_LIMITS.hosts);
// 0 would stall the rollout forever, and more than 100% of the hosts means nothing.
const countOrPercent = z.union([
  count,
  z.string().regex(/^(\d+%?)$/, { message: 'expected a count such as 1 or a percentage such as "25%"', abort: true })
    .refine((v) => Number.parseInt(v, 10) >= 1, { message: 'must be at least 1 (or 1%)' })
    .refine((v) => !v.endsWith('%') || Number.parseInt(v, 10) <= 100, { message: 'a percentage must be at most 100%' }),
], { error: 'expected a count such as 1 or a percentage such as "25%"' });

const STEP_KINDS = 'a step is one of: {canary: <hosts>}, {percent: <1-100>}, {bake: <duration>}, {pause: {}}';
// One object with every kind optional rather than a union of four: when a value has the
// wrong type a union can only say that no branch matched, this names the field (steps[1].bake).
const stepSchema = z.strictObject({
  canary: count.optional(),
  percent: z.number().positive().max(100).optional(),
  bake: durationWithin(0, SPEC_LIMITS.bakeMs, 'at most 168h (one week)').optional(),
  pause: z.strictObject({}).optional(),
}, { error: STEP_KINDS }).refine((step) => Object.values(step).filter((v) => v !== undefined).length === 1, { message: STEP_KINDS });

const EXPECTED_METHOD = `expected ${[...METHOD_NAMES.keys()].map((m) => `"${m}"`).join(', ')}`;

const metricSchema = z.strictObject({
  name: z.string().max(FIELD_BYTES.name).refine(isMetric, { message: EXPECTED_METRIC }),
  max: limit.optional(),
  maxIncrease: limit.optional(),
}).refine((m) => m.max !== undefined || m.maxIncrease !== undefined, {
  message: 'a metric needs max, maxIncrease, or both',
});

const specSchema = z.strictObject({
  module: z.string().min(1).max(FIELD_BYTES.name),
  version: z.string().min(1).max(FIELD_BYTES.version),
  attachment: z.string().max(FIELD_BYTES.attachment).superRefine((s, ctx) => {
    try {
      parseAttachment(s);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
  }),
  selector: z.record(z.string().max(FIELD_BYTES.labelKey), z.string().max(FIELD_BYTES.labelValue))
    .refine((s) => Object.keys(s).length <= MAX_SELECTOR_ENTRIES, { message: `at most ${MAX_SELECTOR_ENTRIES} labels` }).optional(),
  steps: z.array(stepSchema).min(1).max(SPEC_LIMITS.steps),
  maxUnavailable: countOrPercent.optional(),
  analysis: z.strictObject({
    // An interval of 0 would re-run a holding analysis in a tight loop.
    interval: durationWithin(SPEC_LIMITS.minIntervalMs, SPEC_LIMITS.maxIntervalMs, 'from 100ms to 1h').optional(),
    minSamples: z.number().int().positive().max(SPEC_LIMITS.analysisCount).optional(),
    inconclusiveLimit: z.number().int().nonnegative().max(SPEC_LIMITS.analysisCount).optional(),
    failureLimit: z.number().int().nonnegative().max(SPEC_LIMITS.analysisCount).optional(),
    staleAfter: durationWithin(1, SPEC_LIMITS.maxStaleAfterMs, 'longer than 0 and at most 24h').optional(),
    method: z.string().refine((m) => METHOD_NAMES.has(m), { message: EXPECTED_METHOD }).optional(),
    metrics: z.array(metricSchema).min(1).max(SPEC_LIMITS.metrics).optional(),
  }).optional(),
  onFailure: z.enum(['rollback', 'halt']).optional(),
}).superRefine((s, ctx) => {
  // Analysis runs in bake steps: first when the bake ends, then every interval. One canary
  // host gives one sample per report interval (the agent's default, 1 s, is the default
  // analysis interval too), every analysis before minSamples is inconclusive, plus the one
  // before the first report: with fewer tolerated, every one-canary step fails for lack of
  // evidence (bench/results/analysis.json, docs/ANALYSIS.md).
  const a = s.analysis;
  const intervalMs = a?.interval ? parseDuration(a.interval) : DEFAULT_ANALYSIS.intervalMs;
  const minSamples = a?.minSamples ?? DEFAULT_ANALYSIS.minSamples;
  const limit = a?.inconclusiveLimit ?? DEFAULT_ANALYSIS.inconclusiveLimit;
  if (!intervalMs) return;
  for (const step of s.steps) {
    const bakeMs = step.bake === undefined ? null : parseDuration(step.bake);
    if (bakeMs === null) continue;
    const before = Math.floor(bakeMs / intervalMs);
    if (before + limit >= minSamples + MIN_SAMPLES_MARGIN) continue;
    ctx.addIssue({
      code: 'custom',
      path: ['analysis', a?.inconclusiveLimit === undefined ? 'minSamples' : 'inconclusiveLimit'],
      message: `inconclusiveLimit (${limit}) plus the ${before} analysis intervals of the ${step.bake} bake must be at least minSamples (${minSamples}) + ${MIN_SAMPLES_MARGIN}: `
        + 'with one canary host reporting once per analysis interval, every analysis before minSamples reports is inconclusive and the step would fail for lack of evidence',
    });
    return;
  }
});

export type RolloutSpecInput = z.input<typeof specSchema>;

/** inconclusiveLimit plus the analysis intervals in a bake must exceed minSamples by at least this many (specSchema). */
export const MIN_SAMPLES_MARGIN = 2;

export const DEFAULT_ANALYSIS = {
  intervalMs: 1000,
  minSamples: 3,
  inconclusiveLimit: 10,
  failureLimit: 0,
  staleAfterMs: 0,
  method: DEFAULT_METHOD,
  metrics: [{ name: 'drop_rate', max: 0, maxIncrease: 0.05 }],
};

/** Without staleAfter, telemetry older than this many analysis intervals is stale. */
export const STALE_INTERVALS = 3;

/** How old a host's newest report may be before the analysis leaves the host out. */
export function staleAfterMs(analysis: { intervalMs: number; staleAfterMs: number }): number {
  return analysis.staleAfterMs || STALE_INTERVALS * (analysis.intervalMs || DEFAULT_ANALYSIS.intervalMs);
}

/**
 * A zod issue path as the field name a user reads: `steps[2].bake`. A key that is not a plain
 * identifier (a label key such as `app.kubernetes.io/name` or `:`) is quoted, `selector["a:b"]`,
 * so the name stays unambiguous and the `field: why` line still splits at the first `": "`.
 */
function describePath(path: PropertyKey[]): string {
  return path.reduce<string>((acc, p) => {
    if (typeof p === 'number') return `${acc}[${p}]`;
    const key = String(p);
    if (!/^[A-Za-z_][\w-]*$/.test(key)) return `${acc}[${JSON.stringify(key)}]`;
    return acc ? `${acc}.${key}` : key;
  }, '');
}

/** Validates a parsed spec object and turns it into the wire form. */
export function toRolloutSpec(input: unknown): RolloutSpec {
  const parsed = specSchema.safeParse(input);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${describePath(i.path) || '(spec)'}: ${i.message}`);
    // A step with an unknown key fails both the key check and the one-kind check.
    throw new BpfleetError('INVALID_ARGUMENT', 'INVALID_SPEC', `invalid rollout spec:\n${[...new Set(lines)].join('\n')}`);
  }
  const s = parsed.data;
  const steps: Step[] = s.steps.map((step) => {
    if (step.canary !== undefined) return { kind: { $case: 'canary', value: step.canary } };
    if (step.percent !== undefined) return { kind: { $case: 'percent', value: step.percent } };
    if (step.bake !== undefined) return { kind: { $case: 'bakeMs', value: parseDuration(step.bake)! } };
    return { kind: { $case: 'pause', value: true } };
  });
  const a = s.analysis;
  const metrics = (a?.metrics ?? DEFAULT_ANALYSIS.metrics).map((m) => ({ name: m.name, max: m.max ?? 0, maxIncrease: m.maxIncrease ?? 0 }));
  const blind = bakesWithoutBaseline(steps);
  const relativeOnly = metrics.filter((m) => !(m.max > 0)).map((m) => m.name);
  if (blind.length && relativeOnly.length) {
    throw new BpfleetError('INVALID_ARGUMENT', 'NO_BASELINE', `invalid rollout spec:\n  steps: ${blind.map((i) => `step ${i + 1} (bake)`).join(', ')} comes after every host is updated, so no baseline is left and only an absolute limit can pass; give ${relativeOnly.join(', ')} a max`);
  }
  return {
    module: s.module,
    version: s.version,
    attachment: s.attachment,
    selector: s.selector ?? {},
    steps,
    maxUnavailable: String(s.maxUnavailable ?? 1),
    analysis: {
      intervalMs: a?.interval ? parseDuration(a.interval)! : DEFAULT_ANALYSIS.intervalMs,
      minSamples: a?.minSamples ?? DEFAULT_ANALYSIS.minSamples,
      inconclusiveLimit: a?.inconclusiveLimit ?? DEFAULT_ANALYSIS.inconclusiveLimit,
      failureLimit: a?.failureLimit ?? DEFAULT_ANALYSIS.failureLimit,
      staleAfterMs: a?.staleAfter ? parseDuration(a.staleAfter)! : DEFAULT_ANALYSIS.staleAfterMs,
      method: a?.method ? METHOD_NAMES.get(a.method)! : DEFAULT_ANALYSIS.method,
      metrics,
    },
    onFailure: s.onFailure === 'halt' ? FailurePolicy.FAILURE_POLICY_HALT : FailurePolicy.FAILURE_POLICY_ROLLBACK,
  };
}

/**
 * Indexes of the bake steps after a `percent: 100` step: whatever the fleet, their analysis
 * has no baseline (the controller checks the other cases, a canary as large as the fleet,
 * when it plans).
 */
export function bakesWithoutBaseline(steps: readonly Step[]): number[] {
  const first = steps.findIndex((s) => s.kind?.$case === 'percent' && s.kind.value >= 100);
  return first < 0 ? [] : steps.flatMap((s, i) => (i > first && s.kind?.$case === 'bakeMs' ? [i] : []));
}

/** Parses YAML (or JSON) text; errors name the bad field. */
export function parseRolloutSpec(text: string): RolloutSpec {
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (err) {
    throw new BpfleetError('INVALID_ARGUMENT', 'INVALID_SPEC', `rollout spec is not valid YAML: ${(err as Error).message}`);
  }
  return toRolloutSpec(doc);
}

/** Back to the YAML form a user writes, for `rollout get -o yaml` and the docs. */
export function describeStep(step: Step): string {
  const k = step.kind;
  switch (k?.$case) {
    case 'canary': return `canary ${k.value}`;
    case 'percent': return `percent ${k.value}%`;
    case 'bakeMs': return `bake ${formatDuration(k.value)}`;
    case 'pause': return 'pause';
    default: return 'unknown';
  }
}

/** The YAML form of a wire spec: what `rollout get -o yaml` prints and what the API re-validates. */
export function specToInput(spec: RolloutSpec): Record<string, unknown> {
  return {
    module: spec.module,
    version: spec.version,
    attachment: spec.attachment,
    ...(Object.keys(spec.selector).length ? { selector: spec.selector } : {}),
    steps: spec.steps.map((s) => {
      const k = s.kind;
      switch (k?.$case) {
        case 'canary': return { canary: k.value };
        case 'percent': return { percent: k.value };
        case 'bakeMs': return { bake: formatDuration(k.value) };
        case 'pause': return { pause: {} };
        default: return {};
      }
    }),
    maxUnavailable: /^\d+$/.test(spec.maxUnavailable) ? Number(spec.maxUnavailable) : spec.maxUnavailable || undefined,
    ...(spec.analysis ? {
      analysis: {
        interval: formatDuration(spec.analysis.intervalMs || DEFAULT_ANALYSIS.intervalMs),
        minSamples: spec.analysis.minSamples || undefined,
        inconclusiveLimit: spec.analysis.inconclusiveLimit,
        ...(spec.analysis.failureLimit ? { failureLimit: spec.analysis.failureLimit } : {}),
        ...(spec.analysis.staleAfterMs ? { staleAfter: formatDuration(spec.analysis.staleAfterMs) } : {}),
        method: methodName(spec.analysis.method),
        metrics: spec.analysis.metrics.length
          ? spec.analysis.metrics.map((m) => ({ name: m.name, ...(m.max ? { max: m.max } : {}), ...(m.maxIncrease ? { maxIncrease: m.maxIncrease } : {}) }))
          : undefined,
      },
    } : {}),
    onFailure: spec.onFailure === FailurePolicy.FAILURE_POLICY_HALT ? 'halt' : 'rollback',
  };
}

/** Validates a spec from any gRPC client with the same rules and messages as the YAML. */
export function checkRolloutSpec(spec: RolloutSpec | undefined): RolloutSpec {
  if (!spec) throw new BpfleetError('INVALID_ARGUMENT', 'INVALID_SPEC', 'invalid rollout spec: missing');
  return toRolloutSpec(JSON.parse(JSON.stringify(specToInput(spec))));
}
