import { shortDigest } from '../../common/digest.js';
import { HostPhase, RolloutPhase, type CohortSummary, type MetricResult, type Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import { describeStep } from '../rollout/spec.js';
import { hostPhaseName, phaseName, selectionLine, verdictName } from '../rollout/vocabulary.js';

const clockOf = (iso: string): string => (iso ? iso.slice(11, 19) : '--:--:--');

/**
 * What changed between two observations of a rollout, as lines for a person or a CI log.
 * Pure, so `--wait` output is tested without a server.
 */
export function changeLines(prev: Rollout | null, next: Rollout): string[] {
  const out: string[] = [];
  const s = next.status!;
  const at = clockOf(s.updatedAt || next.createdAt);
  const ps = prev?.status;
  if (!prev) {
    const spec = next.spec!;
    out.push(`rollout ${next.id}: ${spec.module}@${spec.version} on ${spec.attachment}`);
    out.push(`  steps: ${spec.steps.map(describeStep).join(' → ')}`);
  }
  if (!ps?.hosts.length && s.hosts.length) {
    const waves = new Map<number, string[]>();
    for (const h of s.hosts) waves.set(h.wave, [...(waves.get(h.wave) ?? []), h.host]);
    const plan = [...waves.entries()].sort((a, b) => a[0] - b[0])
      .map(([w, hosts]) => `wave ${w + 1}: ${hosts.join(', ')}`).join('; ');
    out.push(`[${at}] planned ${s.hosts.length} hosts (${shortDigest(s.digest)}): ${plan}`);
  }
  // A verdict comes before what it caused (the next step, a rollback).
  // The status keeps only the newest analyses and counts the rest: new ones are those past
  // what the previous status had run in all.
  const ranBefore = ps ? ps.analysesDropped + ps.analyses.length : 0;
  for (const a of s.analyses.slice(Math.max(0, ranBefore - s.analysesDropped))) {
    out.push(`[${clockOf(a.at)}] analysis (step ${a.step + 1}): ${verdictName(a.verdict).toUpperCase()} — ${a.summary}`);
  }
  // A phase that starts work is told before that work, a final one after it.
  const phaseChanged = ps?.phase !== s.phase && s.phase !== RolloutPhase.ROLLOUT_PHASE_PENDING;
  const movingOn = s.phase === RolloutPhase.ROLLOUT_PHASE_PROGRESSING || s.phase === RolloutPhase.ROLLOUT_PHASE_ROLLING_BACK;
  const phaseLine = `[${at}] ${phaseName(s.phase).toUpperCase()}${s.message ? `: ${s.message}` : ''}`;
  if (phaseChanged && movingOn) out.push(phaseLine);
  for (const h of s.hosts) {
    const before = ps?.hosts.find((x) => x.host === h.host);
    if (before?.phase === h.phase) continue;
    if (h.phase === HostPhase.HOST_PHASE_PENDING && !before) continue;
    const detail = h.message ? ` — ${h.message}`
      : h.phase === HostPhase.HOST_PHASE_ROLLING_BACK ? ` to ${h.previousVersion || 'nothing'}`
        : h.progId ? ` (prog ${h.progId})` : '';
    out.push(`[${at}]   ${h.host}: ${hostPhaseName(h.phase)}${detail}`);
    if (h.detail && h.detail !== before?.detail) out.push(...h.detail.split('\n').map((l) => `      | ${l}`));
  }
  if (s.skippedTotal !== (ps?.skippedTotal ?? 0)) out.push(`[${at}] ${selectionLine(s)}`);
  const step = next.spec!.steps[s.step];
  if (ps && ps.step !== s.step && step && s.phase === RolloutPhase.ROLLOUT_PHASE_PROGRESSING) {
    out.push(`[${at}] step ${s.step + 1}/${next.spec!.steps.length}: ${describeStep(step)}`);
  }
  if (phaseChanged && !movingOn) out.push(phaseLine);
  return out;
}

const num = (x: number): string => (Number.isFinite(x) ? Number(x.toPrecision(3)).toString() : String(x));

/** One cohort's summary; under the paired method, of its hosts' changes since before the step. */
function cohortLine(name: string, c: CohortSummary | undefined, changes: boolean): string | null {
  if (!c) return null;
  const label = changes ? `${name} Δ` : name;
  return `      ${label.padEnd(8)} median ${num(c.median)}  IQR ${num(c.iqr)}  mean ${num(c.mean)}  n=${c.samples}${changes ? ' hosts' : ''}${c.outliers ? ` (+${c.outliers} outliers set aside)` : ''}`;
}

/** How a metric's verdict came about: both cohorts' summaries, the test, its p-value and the limit. */
export function explainMetric(m: MetricResult): string[] {
  const changes = m.test === 'paired';
  const lines = [cohortLine('canary', m.canarySummary, changes), cohortLine('baseline', m.baselineSummary, changes)].filter((l): l is string => l !== null);
  if (m.test === 'samples') lines.push(`      test: samples — ${m.effect} of ${m.limit} needed`);
  else if (m.test === 'max') lines.push(`      test: max — canary mean ${num(m.effect)} vs limit ${num(m.limit)}`);
  else if (m.test) {
    const p = m.alpha > 0 ? `, p=${num(m.pValue)} vs α ${m.alpha}` : '';
    lines.push(`      test: ${m.test} — increase ${m.effect < 0 ? '' : '+'}${num(m.effect)} vs limit +${num(m.limit)}${p}`);
  }
  return lines;
}

/** The full picture, for `rollout get`. */
export function describeRollout(r: Rollout): string {
  const spec = r.spec!;
  const s = r.status!;
  const lines = [
    `Rollout:    ${r.id}`,
    `Module:     ${spec.module}@${spec.version}${s.digest ? ` (${shortDigest(s.digest)})` : ''}`,
    `Attachment: ${spec.attachment}`,
    `Selector:   ${Object.entries(spec.selector).map(([k, v]) => `${k}=${v}`).join(',') || '(all hosts)'}`,
    `Phase:      ${phaseName(s.phase)}${s.promoted ? ' [promoted]' : ''}${s.message ? ` — ${s.message}` : ''}`,
    ...(r.undoOf ? [`Undoes:     ${r.undoOf}`] : []),
    ...(s.skippedTotal ? [`Skipped:    ${selectionLine(s)}`] : []),
    `Steps:`,
    ...spec.steps.map((st, i) => `  ${i < s.step ? '✓' : i === s.step && s.phase === RolloutPhase.ROLLOUT_PHASE_PROGRESSING ? '▶' : ' '} ${i + 1}. ${describeStep(st)}`),
    `Hosts:`,
    ...s.hosts.flatMap((h) => [`  ${h.host.padEnd(16)} wave ${h.wave + 1}  ${hostPhaseName(h.phase).padEnd(12)} from ${h.previousVersion || '(nothing)'}${h.message ? `  ${h.message}` : ''}`,
      ...(h.detail ? h.detail.split('\n').map((l) => `      | ${l}`) : [])]),
  ];
  if (s.analyses.length) {
    lines.push(s.analysesDropped ? `Analyses (${s.analysesDropped} older not kept):` : 'Analyses:');
    for (const a of s.analyses.slice(-10)) {
      lines.push(`  ${clockOf(a.at)} step ${a.step + 1} ${verdictName(a.verdict).toUpperCase()}`);
      for (const m of a.metrics) {
        lines.push(`    ${m.metric}: canary ${m.canary.toPrecision(3)} (${m.canarySamples} samples) vs baseline ${m.baseline.toPrecision(3)} (${m.baselineSamples}) → ${verdictName(m.verdict)}: ${m.reason}`);
        lines.push(...explainMetric(m));
      }
      if (a.staleHosts.length) lines.push(`    left out (no recent telemetry): ${a.staleHosts.join(', ')}`);
    }
  }
  lines.push(`Created:    ${r.createdAt} by ${r.createdBy}`);
  return lines.join('\n');
}
