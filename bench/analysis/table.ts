/** The analysis benchmark's rows as markdown tables (results/analysis.md, docs/ANALYSIS.md). */
import type { Row } from './experiment.js';

const pct = (x: number): string => `${(100 * x).toFixed(x < 0.1 ? 1 : 0)} %`;
const ivl = (r: Row): string => (r.intervalsToVerdictP50 === null ? '–' : `${r.intervalsToVerdictP50} / ${r.intervalsToVerdictP90}`);

/** One line per method and canary count: A/A false rollbacks, then the chance of catching each regression. */
export function errorTable(rows: readonly Row[]): string {
  const scenarios = [...new Set(rows.map((r) => r.scenario))];
  const head = ['method', 'canaries', ...scenarios.map((s, i) => (i === 0 ? `${s}: false rollbacks (95 % CI)` : `${s}: caught`))];
  const out = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`];
  const keys = [...new Set(rows.map((r) => `${r.method}\u0000${r.canaries}`))];
  for (const k of keys) {
    const [method, canaries] = k.split('\u0000');
    const cells = scenarios.map((s, i) => {
      const r = rows.find((x) => x.method === method && String(x.canaries) === canaries && x.scenario === s);
      if (!r) return '';
      return i === 0 ? `**${pct(r.failRate)}** (${pct(r.failRate95[0])}–${pct(r.failRate95[1])})` : `**${pct(r.failRate)}**`;
    });
    out.push(`| ${method} | ${canaries} | ${cells.join(' | ')} |`);
  }
  return out.join('\n');
}

/** Report intervals to the right verdict (median / 90th percentile), same layout. */
export function timeTable(rows: readonly Row[]): string {
  const scenarios = [...new Set(rows.map((r) => r.scenario))];
  const head = ['method', 'canaries', ...scenarios];
  const out = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`];
  const keys = [...new Set(rows.map((r) => `${r.method}\u0000${r.canaries}`))];
  for (const k of keys) {
    const [method, canaries] = k.split('\u0000');
    const cells = scenarios.map((s) => {
      const r = rows.find((x) => x.method === method && String(x.canaries) === canaries && x.scenario === s);
      return r ? ivl(r) : '';
    });
    out.push(`| ${method} | ${canaries} | ${cells.join(' | ')} |`);
  }
  return out.join('\n');
}

/** minSamples sweep: false rollbacks and catches per method, canary count and minSamples. */
export function sweepTable(rows: readonly Row[]): string {
  const scenarios = [...new Set(rows.map((r) => r.scenario))];
  const head = ['method', 'canaries', 'minSamples', ...scenarios.map((s, i) => (i === 0 ? `${s}: false rollbacks` : `${s}: caught`)), 'A/A: intervals to pass'];
  const out = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i < 3 ? '---' : '---:')).join('|')}|`];
  const keys = [...new Set(rows.map((r) => `${r.method}\u0000${r.canaries}\u0000${r.minSamples}`))];
  for (const k of keys) {
    const [method, canaries, minSamples] = k.split('\u0000');
    const of = rows.filter((x) => x.method === method && String(x.canaries) === canaries && String(x.minSamples) === minSamples);
    const cells = scenarios.map((s) => {
      const r = of.find((x) => x.scenario === s);
      return r ? pct(r.failRate) : '';
    });
    const aa = of.find((x) => x.scenario === scenarios[0]);
    out.push(`| ${method} | ${canaries} | ${minSamples} | ${cells.join(' | ')} | ${aa ? ivl(aa) : ''} |`);
  }
  return out.join('\n');
}
