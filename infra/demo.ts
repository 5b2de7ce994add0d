/**
 * The main job on one machine: a local fleet (etcd, NATS, control plane, 3 hosts in network
 * namespaces with live UDP traffic and kernel XDP programs), then three rollouts through the
 * real CLI: the first install, a good upgrade (promoted) and a bad one (caught on the
 * canary, rolled back). Everything is torn down on exit or Ctrl-C.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { onExit } from '../dev/cleanup.js';
import { LocalFleet, REPO } from '../dev/fleet.js';
import { sweepStale } from '../dev/netns.js';

const HOSTS = Number(process.env.BPFLEET_DEMO_HOSTS ?? 3);
const say = (line: string) => process.stdout.write(`\n\x1b[1m== ${line}\x1b[0m\n`);

function cli(fleet: LocalFleet, args: string[]): Promise<number> {
  process.stdout.write(`$ bpfleet ${args.join(' ')}\n`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(REPO, 'bin/bpfleet.mjs'), ...args], {
      cwd: REPO, env: { ...process.env, ...fleet.cliEnv() }, stdio: ['ignore', 'inherit', 'inherit'],
    });
    // A demo stopped by a signal that reached it alone (not the terminal's whole group)
    // must not leave a CLI behind, still following a control plane that is gone.
    const forget = onExit('stop the bpfleet CLI', () => child.kill('SIGKILL'));
    child.on('error', reject);
    child.on('close', (code) => {
      forget();
      resolve(code ?? 1);
    });
  });
}

async function main(): Promise<number> {
  const t0 = performance.now();
  await sweepStale();
  say(`starting a local fleet: etcd, nats-server (JetStream), control plane, ${HOSTS} hosts with XDP on eth0 and 2000 pps of UDP each`);
  const fleet = await LocalFleet.start({ name: 'demo', hosts: HOSTS, driver: 'kernel', trafficPps: 2000 });
  let failures = 0;
  try {
    process.stdout.write(`mTLS on: fleet CA ${fleet.pki?.caPath}; the CLI runs as ${fleet.pki?.users.admin.spiffeId}\n`);
    process.stdout.write(`control plane at ${fleet.controlAddress}; etcd ${fleet.etcd.endpoint}; nats ${fleet.nats.url}\n`);
    for (const h of fleet.hosts) process.stdout.write(`  ${h.name}: netns ${h.netns.netns}, eth0 ${h.netns.hostAddr}, agent ${h.listen}\n`);
    await cli(fleet, ['hosts']);

    say('pushing three versions of pass-counter (the third drops every packet)');
    for (const m of ['pass-counter-v1', 'pass-counter-v2', 'drop-all']) {
      if (await cli(fleet, ['module', 'push', `agent/bpf/${m}.yaml`]) !== 0) failures++;
    }

    say('rollout 1: install pass-counter 1.0.0 everywhere');
    if (await cli(fleet, ['rollout', 'create', '-f', 'examples/rollout-v1.yaml', '--wait']) !== 0) failures++;
    await cli(fleet, ['hosts']);

    say('rollout 2: upgrade to 2.0.0 — canary, bake with analysis, then the rest (expect: succeeded, exit 0)');
    const good = await cli(fleet, ['rollout', 'create', '-f', 'examples/rollout-v2.yaml', '--wait']);
    process.stdout.write(`exit code ${good}\n`);
    if (good !== 0) failures++;
    await cli(fleet, ['hosts']);

    say('rollout 3: the bad 3.0.0-bad — must be caught on the canary and rolled back (expect: exit 3)');
    const bad = await cli(fleet, ['rollout', 'create', '-f', 'examples/rollout-bad.yaml', '--wait']);
    process.stdout.write(`exit code ${bad}\n`);
    if (bad !== 3) failures++;
    await cli(fleet, ['hosts']);
    await cli(fleet, ['rollout', 'list']);
  } finally {
    say('tearing the fleet down');
    await fleet.stop();
  }
  say(failures ? `demo finished with ${failures} unexpected outcome(s)` : `demo finished as expected in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return failures ? 1 : 0;
}

main().then((code) => process.exit(code), (err) => {
  process.stderr.write(`demo failed: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
