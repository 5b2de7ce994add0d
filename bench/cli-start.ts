/**
 * CLI cold start: how long `bpfleet --help` and `bpfleet version` take from exec to exit,
 * for the built package (bin/bpfleet.mjs → dist/, as `npm install -g` lays it out) and for
 * the checkout's tsx launcher (bin/bpfleet.mjs → TypeScript through tsx), in one run and
 * interleaved so both see the same machine load. `node -e 0` is measured alongside: the part
 * of every number that is Node's own start-up. Writes bench/results/cli-start.json.
 *
 * Run: npx tsx bench/cli-start.ts (BPFLEET_BENCH_CLI_RUNS=<n> runs per command, default 21).
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildDist } from '../infra/build.js';
import { distribution, machine, writeResult, type Distribution } from './dataplane/report.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const RUNS = Number(process.env.BPFLEET_BENCH_CLI_RUNS ?? 21);
/** The target from issue 12: kubectl and bpftool answer in tens of milliseconds. */
const TARGET_MS = 200;

/** Wall time of one run of `node args...` in ms; throws if it fails. */
function timeRun(args: string[], cwd: string): number {
  const start = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: '', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '' } });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}: ${r.stderr.toString()}`);
  return ms;
}

// The built package as npm installs it: bin/ and dist/ without the TypeScript sources, its
// dependencies resolved from the checkout's node_modules.
const stage = mkdtempSync(join(tmpdir(), 'bpfleet-cli-start-'));
try {
  const info = await buildDist(join(stage, 'dist'));
  cpSync(join(REPO, 'bin'), join(stage, 'bin'), { recursive: true });
  cpSync(join(REPO, 'package.json'), join(stage, 'package.json'));
  symlinkSync(join(REPO, 'node_modules'), join(stage, 'node_modules'));

  const cases: { name: string; args: string[]; cwd: string }[] = [
    { name: 'node -e 0', args: ['-e', '0'], cwd: REPO },
    { name: 'built --help', args: [join(stage, 'bin/bpfleet.mjs'), '--help'], cwd: stage },
    { name: 'built version', args: [join(stage, 'bin/bpfleet.mjs'), 'version'], cwd: stage },
    { name: 'tsx --help', args: [join(REPO, 'bin/bpfleet.mjs'), '--help'], cwd: REPO },
    { name: 'tsx version', args: [join(REPO, 'bin/bpfleet.mjs'), 'version'], cwd: REPO },
  ];
  const samples = new Map(cases.map((c) => [c.name, [] as number[]]));
  for (const c of cases) timeRun(c.args, c.cwd); // warm the page cache and tsx's cache
  for (let i = 0; i < RUNS; i++) {
    for (const c of cases) samples.get(c.name)!.push(timeRun(c.args, c.cwd));
  }
  const results: Record<string, Distribution> = Object.fromEntries([...samples].map(([name, s]) => [name, distribution(s)]));
  const p50 = (name: string) => results[name]!.p50_ms;
  const summary = {
    builtHelpP50Ms: p50('built --help'),
    builtVersionP50Ms: p50('built version'),
    tsxHelpP50Ms: p50('tsx --help'),
    nodeBaselineP50Ms: p50('node -e 0'),
    builtHelpOverNodeP50Ms: Math.round((p50('built --help') - p50('node -e 0')) * 1000) / 1000,
    speedupHelp: Math.round((p50('tsx --help') / p50('built --help')) * 10) / 10,
    targetMs: TARGET_MS,
    builtMeetsTarget: p50('built --help') < TARGET_MS && p50('built version') < TARGET_MS,
  };
  const path = writeResult('cli-start', {
    bench: 'cli-start',
    started: new Date().toISOString(),
    machine: machine(),
    build: info,
    runsPerCase: RUNS,
    method: 'wall time from spawn to exit of each command, cases interleaved round-robin after one warm-up run each',
    summary,
    cases: results,
  });
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\nwrote ${path}\n`);
} finally {
  rmSync(stage, { recursive: true, force: true });
}
