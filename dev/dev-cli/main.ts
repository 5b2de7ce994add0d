/**
 * `bpfleet dev up | down | status | env`: a local fleet that keeps running for people to try
 * the CLI against, the way `kind create cluster` does. bin/bpfleet.mjs hands `bpfleet dev ...`
 * here, so the control plane's CLI (control/cli) never imports dev/.
 *
 * `up` starts dev/dev-cli/supervisor.ts as a detached background process and waits until it
 * records the fleet as ready (or failed) in the state directory (state.ts); `down` signals it
 * and then sweeps whatever a crashed supervisor left. Exit codes: 0 done, 1 failed or not
 * running, 2 bad usage.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { isAlive, procRef } from '../claims.js';
import { REPO } from '../fleet.js';
import { programCommand } from '../programs.js';
import { sweepStale } from '../netns.js';
import { checkName, readState, removeState, stateDir, type DevFleetState } from './state.js';

const UP_TIMEOUT_MS = 300_000;
const DOWN_TIMEOUT_MS = 60_000;
const MAX_HOSTS = 64;

const out = (line = ''): void => void process.stdout.write(`${line}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function intIn(min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max) throw new InvalidArgumentError(`must be an integer in ${min}..${max}`);
    return n;
  };
}

function alive(state: DevFleetState): boolean {
  return isAlive(state.supervisor);
}

/** Single-quoted for sh, so `eval $(bpfleet dev env)` takes values verbatim. */
function shellQuote(v: string): string {
  return `'${v.replace(/'/g, `'\\''`)}'`;
}

function printStatus(state: DevFleetState): void {
  const running = alive(state);
  out(`dev fleet "${state.name}": ${running ? state.phase : `not running (supervisor ${state.supervisor.pid} is gone; run bpfleet dev down)`}`);
  out(`  supervisor  pid ${state.supervisor.pid}, since ${state.startedAt}, log ${state.log}`);
  if (state.error) out(`  error       ${state.error}`);
  if (state.services) {
    out(`  control     ${state.services.control}`);
    out(`  etcd        ${state.services.etcd}`);
    out(`  nats        ${state.services.nats}`);
  }
  if (state.hosts.length > 0) {
    out(`  ${'HOST'.padEnd(6)} ${'NETNS'.padEnd(22)} ${'AGENT (mgmt0)'.padEnd(20)} ${'ETH0'.padEnd(16)} PIN ROOT`);
    for (const h of state.hosts) out(`  ${h.name.padEnd(6)} ${h.netns.padEnd(22)} ${h.listen.padEnd(20)} ${h.dataAddress.padEnd(16)} ${h.pinRoot}`);
  }
  for (const p of state.processes) out(`  ${procRef(p.pid) ? 'running' : 'EXITED '} ${p.name} (pid ${p.pid}) log ${p.log}`);
}

async function up(name: string, o: { hosts: number; driver: 'kernel' | 'sim'; pps: number }): Promise<number> {
  const existing = readState(name);
  if (existing && alive(existing)) {
    out(`dev fleet "${name}" is already up`);
    printStatus(existing);
    return existing.phase === 'failed' ? 1 : 0;
  }
  if (existing) await down(name, { quiet: true });
  const dir = stateDir(name);
  mkdirSync(dir, { recursive: true });
  const log = openSync(join(dir, 'supervisor.log'), 'a');
  const supervisor = programCommand('bpfleet-dev-supervisor');
  const child = spawn(supervisor.command, [...supervisor.args,
    '--name', name, '--hosts', String(o.hosts), '--driver', o.driver, '--pps', String(o.pps)], {
    cwd: REPO, detached: true, stdio: ['ignore', log, log], env: { ...process.env, BPFLEET_LOG_DIR: join(dir, 'logs') },
  });
  closeSync(log);
  child.unref();
  const deadline = Date.now() + UP_TIMEOUT_MS;
  for (;;) {
    const state = readState(name);
    const running = procRef(child.pid!) !== undefined;
    if (state?.phase === 'ready') {
      printStatus(state);
      out(`\npoint the CLI at it: eval $(bpfleet dev env${name === 'dev' ? '' : ` --name ${name}`})`);
      return 0;
    }
    if (state?.phase === 'failed' || !running || Date.now() > deadline) {
      process.stderr.write(`bpfleet dev up: ${state?.error ?? (running ? `not ready within ${UP_TIMEOUT_MS / 1000} s` : 'the supervisor exited')}; log: ${join(dir, 'supervisor.log')}\n`);
      await down(name, { quiet: true });
      return 1;
    }
    await sleep(250);
  }
}

/** Stops the supervisor (it tears the fleet down), then sweeps what a crash left. Idempotent. */
async function down(name: string, { quiet = false } = {}): Promise<number> {
  const state = readState(name);
  if (state && alive(state)) {
    process.kill(state.supervisor.pid, 'SIGTERM');
    const deadline = Date.now() + DOWN_TIMEOUT_MS;
    while (isAlive(state.supervisor) && Date.now() < deadline) await sleep(100);
    if (isAlive(state.supervisor)) process.kill(state.supervisor.pid, 'SIGKILL');
  }
  // Whatever the supervisor owned and did not remove (it crashed, or was killed above) now has
  // a dead owner: sweepStale() removes exactly that, and leaves live runs alone.
  const swept = await sweepStale();
  removeState(name);
  if (!quiet) {
    const n = swept.processes.length + swept.netns.length + swept.pins.length;
    out(state ? `dev fleet "${name}" is down${n ? ` (swept ${n} leftovers of a crash)` : ''}` : `no dev fleet "${name}" (nothing to stop)`);
  }
  return 0;
}

function status(name: string): number {
  const state = readState(name);
  if (!state) {
    out(`no dev fleet "${name}" (bpfleet dev up starts one)`);
    return 1;
  }
  printStatus(state);
  return alive(state) && state.phase === 'ready' ? 0 : 1;
}

function env(name: string): number {
  const state = readState(name);
  if (!state || !alive(state) || state.phase !== 'ready') {
    process.stderr.write(`bpfleet dev env: dev fleet "${name}" is not running (bpfleet dev up starts it)\n`);
    return 1;
  }
  for (const [k, v] of Object.entries(state.env)) out(`export ${k}=${shellQuote(v)}`);
  return 0;
}

const nameOption = ['--name <name>', 'which dev fleet (several can run side by side)', checkName, 'dev'] as const;
const program = new Command('bpfleet dev')
  .description('a local fleet on this machine (etcd, NATS, the control plane, hosts in network namespaces) to try bpfleet against')
  .exitOverride();
let code = 0;
program.command('up').description('start the dev fleet in the background and wait until it is ready')
  .option(...nameOption)
  .option('--hosts <n>', `hosts, each a network namespace with its own agent (1-${MAX_HOSTS})`, intIn(1, MAX_HOSTS), 3)
  .option('--driver <kind>', 'dataplane: kernel (XDP on each host\'s eth0) or sim', (v) => {
    if (v !== 'kernel' && v !== 'sim') throw new InvalidArgumentError('use kernel or sim');
    return v;
  }, 'kernel')
  .option('--pps <n>', 'UDP packets per second into each host\'s eth0 (0: none)', intIn(0, 100_000), 1000)
  .action(async (o) => void (code = await up(o.name, o)));
program.command('down').description('tear the dev fleet down (also after a crash); nothing to do is fine')
  .option(...nameOption).action(async (o) => void (code = await down(o.name)));
program.command('status').description('what runs and where; exit 1 when the fleet is not running')
  .option(...nameOption).action((o) => void (code = status(o.name)));
program.command('env').description('shell exports that point the bpfleet CLI at the dev fleet: eval $(bpfleet dev env)')
  .option(...nameOption).action((o) => void (code = env(o.name)));

program.parseAsync(process.argv.slice(3), { from: 'user' }).then(() => process.exit(code), (err: unknown) => {
  const e = err as { code?: string; exitCode?: number; message?: string };
  if (e.code?.startsWith('commander.')) process.exit(e.code === 'commander.helpDisplayed' || e.code === 'commander.help' || e.code === 'commander.version' ? 0 : 2);
  process.stderr.write(`bpfleet dev: ${e.message ?? String(err)}\n`);
  process.exit(1);
});
