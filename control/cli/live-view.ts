import { inert } from './inert.js';
import { shortDigest } from '../../common/digest.js';
import { HostPhase, RolloutPhase, type HostProgress, type Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import { formatDuration } from '../rollout/duration.js';
import { describeStep } from '../rollout/spec.js';
import { phaseName, selectionLine, verdictName } from '../rollout/vocabulary.js';
import { explainMetric } from './rollout-view.js';

const H = HostPhase;
const P = RolloutPhase;
const BAR_WIDTH = 24;
const ANALYSES_SHOWN = 4;

const clockOf = (iso: string): string => (iso ? iso.slice(11, 19) : '--:--:--');

function seconds(ms: number): string {
  return ms >= 60_000 ? formatDuration(Math.round(ms / 1000) * 1000) : `${(Math.max(0, ms) / 1000).toFixed(1)}s`;
}

/** [████▒▒░░░░]: updated, in flight (updating or rolling back), the rest. */
export function progressBar(hosts: readonly HostProgress[], width = BAR_WIDTH): string {
  const n = hosts.length || 1;
  const count = (...phases: HostPhase[]) => hosts.filter((h) => phases.includes(h.phase)).length;
  const full = Math.round((count(H.HOST_PHASE_UPDATED) / n) * width);
  const busy = Math.min(width - full, Math.round((count(H.HOST_PHASE_UPDATING, H.HOST_PHASE_ROLLING_BACK) / n) * width));
  const failed = Math.min(width - full - busy, Math.round((count(H.HOST_PHASE_FAILED) / n) * width));
  return `[${'█'.repeat(full)}${'▒'.repeat(busy)}${'✗'.repeat(failed)}${'░'.repeat(width - full - busy - failed)}]`;
}

function tally(hosts: readonly HostProgress[]): string {
  const parts: string[] = [`${hosts.filter((h) => h.phase === H.HOST_PHASE_UPDATED).length}/${hosts.length} updated`];
  for (const [phase, word] of [[H.HOST_PHASE_UPDATING, 'updating'], [H.HOST_PHASE_FAILED, 'failed'], [H.HOST_PHASE_ROLLING_BACK, 'rolling back'], [H.HOST_PHASE_ROLLED_BACK, 'rolled back'], [H.HOST_PHASE_RESTORE_FAILED, 'not restored'], [H.HOST_PHASE_SKIPPED, 'skipped']] as const) {
    const c = hosts.filter((h) => h.phase === phase).length;
    if (c) parts.push(`${c} ${word}`);
  }
  return parts.join(', ');
}

/** What the current step is doing right now, in a few words. */
function stepState(r: Rollout, now: number): string {
  const s = r.status!;
  const step = r.spec!.steps[s.step];
  if (s.phase !== P.ROLLOUT_PHASE_PROGRESSING) return '';
  if (step?.kind?.$case === 'bakeMs') {
    const left = Date.parse(s.stepStartedAt) + step.kind.value - now;
    if (left > 0) return `baking, ${seconds(left)} left`;
    const limit = r.spec!.analysis?.inconclusiveLimit ?? 0;
    return s.inconclusiveInARow ? `analysing, ${s.inconclusiveInARow} inconclusive of ${limit} tolerated` : 'analysing';
  }
  return step ? 'updating its wave' : 'finishing the last wave';
}

/**
 * The live picture `rollout get --watch` redraws on a terminal: the steps, a progress bar
 * per wave, and the latest verdicts with the numbers behind them. Pure: a function of the
 * rollout and the clock, so it is tested without a terminal.
 */
export function liveView(r: Rollout, now: number): string[] {
  const spec = r.spec!;
  const s = r.status!;
  const selector = Object.entries(spec.selector).map(([k, v]) => `${k}=${v}`).join(',') || 'all hosts';
  const flags = [s.promoted ? 'promoted' : '', s.aborted ? 'aborted' : '', r.undoOf ? `undoes ${r.undoOf}` : ''].filter(Boolean);
  const lines = [
    `rollout ${r.id}  ${spec.module}@${spec.version}${s.digest ? ` (${shortDigest(s.digest)})` : ''} on ${spec.attachment}, ${selector}`,
    `${phaseName(s.phase).toUpperCase()}${flags.length ? ` [${flags.join(', ')}]` : ''}${s.message ? `  ${s.message}` : ''}`,
    ...(s.skippedTotal ? [selectionLine(s)] : []),
    'steps',
  ];
  const state = stepState(r, now);
  spec.steps.forEach((st, i) => {
    const done = i < s.step || s.phase === P.ROLLOUT_PHASE_SUCCEEDED;
    const here = i === s.step && !done;
    const mark = done ? '✓' : here ? (s.phase === P.ROLLOUT_PHASE_PAUSED ? '‖' : '▶') : ' ';
    lines.push(`  ${mark} ${i + 1}. ${describeStep(st)}${here && state ? `  (${state})` : ''}`);
  });
  if (s.hosts.length) {
    lines.push(s.hostsOmitted ? `waves (${s.hostsOmitted} of ${s.hostCounts?.total ?? '?'} hosts not reported yet)` : 'waves');
    const waves = [...new Set(s.hosts.map((h) => h.wave))].sort((a, b) => a - b);
    for (const w of waves) {
      const hosts = s.hosts.filter((h) => h.wave === w);
      const label = w < spec.steps.length ? `step ${w + 1}` : 'last';
      lines.push(`  ${label.padEnd(7)} ${progressBar(hosts)} ${tally(hosts)}`);
    }
  }
  const analyses = s.analyses.slice(-ANALYSES_SHOWN);
  if (analyses.length) {
    lines.push('analysis');
    for (const [i, a] of analyses.entries()) {
      lines.push(`  ${clockOf(a.at)} step ${a.step + 1} ${verdictName(a.verdict).toUpperCase()}`);
      for (const m of a.metrics) {
        lines.push(`    ${m.metric}: canary ${num(m.canary)} (${m.canarySamples}) vs baseline ${num(m.baseline)} (${m.baselineSamples}) → ${verdictName(m.verdict)}: ${m.reason}`);
        // The latest verdict with how it came about (summaries, test, p-value, limit); older
        // ones stay one line each so the picture fits a terminal.
        if (i === analyses.length - 1) lines.push(...explainMetric(m));
      }
      if (a.staleHosts.length) lines.push(`    left out (no recent telemetry): ${a.staleHosts.join(', ')}`);
    }
  }
  return lines;
}

const num = (x: number): string => (Math.abs(x) >= 100 ? x.toFixed(0) : Number(x.toPrecision(3)).toString());

/** One line per change, for `rollout status` in a CI log. */
export function statusLine(r: Rollout): string {
  const s = r.status!;
  const steps = r.spec!.steps;
  const step = steps[s.step];
  const where = s.phase === P.ROLLOUT_PHASE_PROGRESSING || s.phase === P.ROLLOUT_PHASE_PAUSED
    ? ` step ${Math.min(s.step + 1, steps.length)}/${steps.length}${step ? ` (${describeStep(step)})` : ''}`
    : '';
  const hosts = s.hosts.length ? `; ${tally(s.hosts)}` : '';
  const skipped = s.skippedTotal ? `; ${selectionLine(s)}` : '';
  return `[${clockOf(s.updatedAt || r.createdAt)}] ${phaseName(s.phase)}${where}${hosts}${skipped}${s.message ? ` — ${s.message}` : ''}`;
}

/** The part of a rollout `statusLine` shows: a new line only when this changes. */
export function statusKey(r: Rollout): string {
  const s = r.status!;
  return JSON.stringify([s.phase, s.step, s.message, s.skippedTotal, s.hosts.map((h) => h.phase)]);
}

export interface Terminal {
  write(text: string): unknown;
  columns?: number;
}

/**
 * Redraws a block of lines in place: moves the cursor back over the previous frame and
 * clears it (ANSI CPL + ED). Lines are cut to the terminal's width, since a wrapped line
 * would throw the count of lines to move back over off.
 */
export class LivePainter {
  private drawn = 0;

  constructor(private readonly out: Terminal) {}

  paint(lines: readonly string[]): void {
    const width = Math.max(20, (this.out.columns || 80) - 1);
    // The painter's own escapes are the only ones that reach the terminal.
    const cut = lines.map(inert).map((l) => ([...l].length > width ? `${[...l].slice(0, width - 1).join('')}…` : l));
    const back = this.drawn ? `\x1b[${this.drawn}F\x1b[J` : '';
    this.out.write(`${back}${cut.join('\n')}\n`);
    this.drawn = cut.length;
  }
}
