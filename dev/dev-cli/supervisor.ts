/**
 * The background process behind `bpfleet dev up`: it starts a routed LocalFleet (etcd, NATS,
 * the control plane, N hosts with traffic), records it in the state directory, and keeps it
 * running until SIGTERM or SIGINT (`bpfleet dev down`), when it tears everything down. It is
 * the owner of every claim on the fleet's namespaces, pins and processes, so if it dies
 * uncleanly, `down` (or any sweepStale()) finds them ownerless and removes them.
 *
 * Usage: supervisor.ts --name <n> --hosts <N> --driver kernel|sim --pps <n>
 */
import { Command } from 'commander';
import { selfRef } from '../claims.js';
import { LocalFleet } from '../fleet.js';
import { sweepStale } from '../netns.js';
import { readState, stateDir, writeState, type DevFleetState } from './state.js';

// One traffic run lasts at most 10 minutes (dev/traffic.ts); the fleet renews it.
const TRAFFIC_RUN_MS = 10 * 60_000;

const opts = new Command('bpfleet-dev-supervisor')
  .requiredOption('--name <name>')
  .requiredOption('--hosts <n>', '', Number)
  .requiredOption('--driver <kind>')
  .requiredOption('--pps <n>', '', Number)
  .parse()
  .opts<{ name: string; hosts: number; driver: 'kernel' | 'sim'; pps: number }>();

const state: DevFleetState = {
  name: opts.name, phase: 'starting', supervisor: selfRef(), startedAt: new Date().toISOString(),
  log: `${stateDir(opts.name)}/supervisor.log`, env: {}, hosts: [], processes: [],
};

let fleet: LocalFleet | undefined;
let stopping: Promise<void> | undefined;

function stop(signal: string): void {
  stopping ??= (async () => {
    process.stdout.write(`${signal}: tearing the dev fleet down\n`);
    const current = readState(opts.name);
    if (current) writeState({ ...current, phase: 'stopping' });
    try {
      await fleet?.stop();
      process.exit(0);
    } catch (err) {
      process.stderr.write(`teardown: ${(err as Error).message}\n`);
      process.exit(1);
    }
  })();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
// Started detached from any terminal: a hangup is no reason to stop (nor for the exit hooks to act).
process.on('SIGHUP', () => {});

async function main(): Promise<void> {
  writeState(state);
  await sweepStale();
  fleet = await LocalFleet.start({
    name: opts.name, hosts: opts.hosts, driver: opts.driver, network: 'routed',
    trafficPps: opts.pps, trafficDurationMs: TRAFFIC_RUN_MS, trafficRenew: true,
  });
  if (stopping) return;
  const f = fleet;
  writeState({
    ...state, phase: 'ready', env: f.clientEnv(),
    services: { address: f.servicesAddress, control: f.controlAddress, etcd: f.etcdEndpoints, nats: f.nats.url },
    hosts: f.hosts.map((h) => ({ name: h.name, netns: h.netns.netns, listen: h.listen, dataAddress: h.netns.hostAddr, pinRoot: h.pinRoot.path })),
    processes: [f.etcd.process!, f.nats.process!, f.control, ...f.hosts.map((h) => h.agent)]
      .map((p) => ({ name: p.name, pid: p.pid, log: p.logFile })),
  });
  process.stdout.write(`dev fleet ${opts.name} ready: control plane at ${f.controlAddress}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`dev fleet ${opts.name} failed to start: ${(err as Error).stack ?? String(err)}\n`);
  writeState({ ...state, phase: 'failed', error: (err as Error).message });
  process.exit(1);
});
