/**
 * `npm run chaos`: the long fault-injection run (issue 11). Options as flags or environment:
 * --duration <s> (CHAOS_DURATION_S, default 600), --seed <n> (CHAOS_SEED, default: the time),
 * --sim-hosts <n> (CHAOS_SIM_HOSTS, default 300), --kernel-hosts <n> (default 3),
 * --fault-gap <s> (mean seconds between faults, default 8). Writes bench/results/chaos.json;
 * exits 1 when an invariant was violated. Needs root, etcd, nats-server, bpftool, clang.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { REPO } from '../../dev/fleet.js';
import { runChaos } from './runner.js';

const { values } = parseArgs({
  options: {
    duration: { type: 'string' }, seed: { type: 'string' }, 'sim-hosts': { type: 'string' },
    'kernel-hosts': { type: 'string' }, 'fault-gap': { type: 'string' }, out: { type: 'string' },
  },
});
const num = (flag: string, v: string | undefined, fallback: number): number => {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${flag} "${v}" is not a whole number`);
  return n;
};

const report = await runChaos({
  seed: num('seed', values.seed ?? process.env.CHAOS_SEED, Date.now() % 2 ** 31),
  durationMs: num('duration', values.duration ?? process.env.CHAOS_DURATION_S, 600) * 1000,
  simHosts: num('sim-hosts', values['sim-hosts'] ?? process.env.CHAOS_SIM_HOSTS, 300),
  kernelHosts: num('kernel-hosts', values['kernel-hosts'], 3),
  controlReplicas: 2,
  meanFaultGapMs: num('fault-gap', values['fault-gap'], 8) * 1000,
  rolloutBoundMs: 180_000,
  resultsPath: values.out ?? join(REPO, 'bench/results/chaos.json'),
});
process.exit(report.violations.length === 0 ? 0 : 1);
