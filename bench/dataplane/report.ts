/** What every dataplane benchmark result carries: summary statistics and the machine. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, release } from 'node:os';
import { fileURLToPath } from 'node:url';

const RESULTS_DIR = fileURLToPath(new URL('../results/', import.meta.url));

export interface Distribution {
  n: number;
  p50_ms: number;
  p99_ms: number;
  mean_ms: number;
  max_ms: number;
}

/** Nearest-rank percentiles of durations in milliseconds, rounded to µs. */
export function distribution(samples: readonly number[]): Distribution {
  if (samples.length === 0) throw new Error('distribution of no samples');
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = (p: number): number => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
  const round = (ms: number): number => Math.round(ms * 1000) / 1000;
  return {
    n: sorted.length,
    p50_ms: round(rank(50)),
    p99_ms: round(rank(99)),
    mean_ms: round(sorted.reduce((s, x) => s + x, 0) / sorted.length),
    max_ms: round(sorted.at(-1)!),
  };
}

export interface Machine {
  nproc: number;
  cpu: string;
  kernel: string;
  node: string;
  /** 1-minute load average when the benchmark started: other work on the machine skews results. */
  loadavg1: number;
}

export function machine(): Machine {
  return {
    nproc: availableParallelism(),
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    kernel: release(),
    node: process.version,
    loadavg1: Math.round(loadavg()[0]! * 100) / 100,
  };
}

/** Writes bench/results/<name>.json and returns its path. */
export function writeResult(name: string, result: object): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const path = `${RESULTS_DIR}${name}.json`;
  writeFileSync(path, `${JSON.stringify(result, null, 2)}\n`);
  return path;
}
