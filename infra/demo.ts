/**
 * The main job on one machine, built on `bpfleet dev`: a dev fleet (etcd, NATS, control
 * plane, 3 hosts, each a network namespace running its own agent, reached over a routed
 * management link, with live UDP traffic into eth0 and kernel XDP programs), then three
 * rollouts through the real CLI: the first install, a good upgrade (promoted) and a bad one
 * (caught on the canary, rolled back). `bpfleet dev down` tears it down on exit or Ctrl-C.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { onExit } from '../dev/cleanup.js';
import { REPO } from '../dev/fleet.js';

const HOSTS = Number(process.env.BPFLEET_DEMO_HOSTS ?? 3);
const NAME = 'demo';
const say = (line: string) => process.stdout.write(`\n\x1b[1m== ${line}\x1b[0m\n`);

/** Runs `bpfleet <args>` with its output on ours (or captured, with `capture`); resolves with the exit code and stdout. */
function bpfleet(args: string[], env: Record<string, string> = {}, capture = false): Promise<{ code: number; stdout: string }> {
  if (!capture) process.stdout.write(`$ bpfleet ${args.join(' ')}\n`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(REPO, 'bin/bpfleet.mjs'), ...args], {
      cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', capture ? 'pipe' : 'inherit', 'inherit'],
    });
    let stdout = '';
    child.stdout?.on('data', (d) => (stdout += d));
    // A demo stopped by a signal that reached it alone (not the terminal's whole group)
    // must not leave a CLI behind, still following a control plane that is gone.
    const forget = onExit('stop the bpfleet CLI', () => child.kill('SIGKILL'));
    child.on('error', reject);
    child.on('close', (code) => {
      forget();
      resolve({ code: code ?? 1, stdout });
    });
  });
}

async function main(): Promise<number> {
  const t0 = performance.now();
  say(`bpfleet dev up: etcd, nats-server (JetStream), control plane, ${HOSTS} hosts with XDP on eth0 and 2000 pps of UDP each`);
  let stopping = false;
  const down = async () => {
    if (stopping) return;
    stopping = true;
    say('tearing the fleet down');
    await bpfleet(['dev', 'down', '--name', NAME]);
  };
  process.once('SIGINT', () => void down().then(() => process.exit(130)));
  if ((await bpfleet(['dev', 'up', '--name', NAME, '--hosts', String(HOSTS), '--pps', '2000'])).code !== 0) {
    await down();
    return 1;
  }
  let failures = 0;
  try {
    const exports = (await bpfleet(['dev', 'env', '--name', NAME], {}, true)).stdout;
    const env = Object.fromEntries([...exports.matchAll(/^export (\w+)='([^']*)'$/gm)].map((m) => [m[1]!, m[2]!]));
    const cli = async (args: string[]) => (await bpfleet(args, env)).code;
    process.stdout.write(env.BPFLEET_CA ? `mTLS on: fleet CA ${env.BPFLEET_CA}; the CLI presents ${env.BPFLEET_CERT} (the admin user)\n` : 'mTLS off (insecure fleet)\n');
    await cli(['hosts']);

    say('pushing three versions of pass-counter (the third drops every packet)');
    for (const m of ['pass-counter-v1', 'pass-counter-v2', 'drop-all']) {
      if (await cli(['module', 'push', `agent/bpf/${m}.yaml`]) !== 0) failures++;
    }

    say('rollout 1: install pass-counter 1.0.0 everywhere');
    if (await cli(['rollout', 'create', '-f', 'examples/rollout-v1.yaml', '--wait']) !== 0) failures++;
    await cli(['hosts']);

    say('rollout 2: upgrade to 2.0.0 — canary, bake with analysis, then the rest (expect: succeeded, exit 0)');
    const good = await cli(['rollout', 'create', '-f', 'examples/rollout-v2.yaml', '--wait']);
    process.stdout.write(`exit code ${good}\n`);
    if (good !== 0) failures++;
    await cli(['hosts']);

    say('rollout 3: the bad 3.0.0-bad — must be caught on the canary and rolled back (expect: exit 3)');
    const bad = await cli(['rollout', 'create', '-f', 'examples/rollout-bad.yaml', '--wait']);
    process.stdout.write(`exit code ${bad}\n`);
    if (bad !== 3) failures++;
    await cli(['hosts']);
    await cli(['rollout', 'list']);
  } finally {
    await down();
  }
  say(failures ? `demo finished with ${failures} unexpected outcome(s)` : `demo finished as expected in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return failures ? 1 : 0;
}

main().then((code) => process.exit(code), (err) => {
  process.stderr.write(`demo failed: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
