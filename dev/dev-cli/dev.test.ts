/**
 * `bpfleet dev` as a user runs it, through bin/bpfleet.mjs: up (2 hosts, kernel dataplane,
 * routed) → status → env → a rollout through the CLI pointed at it by that env → down, which
 * must leave no namespace, pin or process; then down again (idempotent), and down after the
 * supervisor was killed (a crash), which must sweep what it left.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { prereqSkip } from '../../e2e/support/prereqs.js';
import { xdpProgId } from '../../e2e/support/bpftool.js';
import { procRef } from '../claims.js';
import { REPO } from '../fleet.js';
import { listNetns } from '../netns.js';
import type { DevFleetState } from './state.js';

const skip = await prereqSkip(['root', 'bpf', 'bpffs', 'etcd', 'nats', 'netns', 'nsenter', 'clang']);
const STATE_ROOT = mkdtempSync(join(tmpdir(), 'bpfleet-devstate-'));
const NAME = `dt${process.pid % 100000}`;

function bpfleet(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(REPO, 'bin/bpfleet.mjs'), ...args], {
      cwd: REPO, env: { ...process.env, BPFLEET_DEV_STATE: STATE_ROOT, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

const readState = (): DevFleetState => JSON.parse(readFileSync(join(STATE_ROOT, NAME, 'state.json'), 'utf8')) as DevFleetState;

async function leftovers(state: DevFleetState): Promise<string[]> {
  const netns = (await listNetns()).filter((n) => n.startsWith(`bpfleet-${NAME}-`));
  const pins = readdirSync('/sys/fs/bpf').filter((p) => p.startsWith(`bpfleet-${NAME}-`));
  const procs = [state.supervisor.pid, ...state.processes.map((p) => p.pid)].filter((pid) => procRef(pid)).map(String);
  return [...netns, ...pins, ...procs];
}

describe('bpfleet dev up | status | env | down', { skip }, () => {
  after(async () => {
    await bpfleet(['dev', 'down', '--name', NAME]);
    rmSync(STATE_ROOT, { recursive: true, force: true });
  });

  test('a dev fleet comes up, takes a rollout from the CLI, and goes down without a trace', async () => {
    const up = await bpfleet(['dev', 'up', '--name', NAME, '--hosts', '2', '--pps', '500']);
    assert.equal(up.code, 0, up.stdout + up.stderr);
    const state = readState();
    assert.equal(state.phase, 'ready');

    const status = await bpfleet(['dev', 'status', '--name', NAME]);
    assert.equal(status.code, 0, status.stderr);
    for (const h of state.hosts) assert.match(status.stdout, new RegExp(`${h.name} +${h.netns} +${h.listen.replace(/\./g, '\\.')}`));

    const env = await bpfleet(['dev', 'env', '--name', NAME]);
    assert.equal(env.code, 0, env.stderr);
    assert.match(env.stdout, /^export BPFLEET_SERVER='198\.1[89]\.\d+\.\d+:\d+'$/m);
    // The fleet's PKI: the CLI presents the admin user's certificate.
    for (const v of ['BPFLEET_CA', 'BPFLEET_CERT', 'BPFLEET_KEY']) assert.match(env.stdout, new RegExp(`^export ${v}='/`, 'm'));
    const cliEnv = Object.fromEntries([...env.stdout.matchAll(/^export (\w+)='([^']*)'$/gm)].map((m) => [m[1]!, m[2]!]));
    const push = await bpfleet(['module', 'push', 'agent/bpf/pass-counter-v1.yaml'], cliEnv);
    assert.equal(push.code, 0, push.stderr);
    const rollout = await bpfleet(['rollout', 'create', '-f', 'examples/rollout-v1.yaml', '--wait', '--timeout', '90s'], cliEnv);
    assert.equal(rollout.code, 0, rollout.stdout + rollout.stderr);
    for (const h of state.hosts) assert.ok(await xdpProgId(h.netns, 'eth0'), `${h.name}: no XDP program on eth0`);

    const down = await bpfleet(['dev', 'down', '--name', NAME]);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(await leftovers(state), []);
    assert.deepEqual(readdirSync(STATE_ROOT), []);
    const again = await bpfleet(['dev', 'down', '--name', NAME]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /nothing to stop/);
    assert.equal((await bpfleet(['dev', 'env', '--name', NAME])).code, 1);
  });

  test('down after the supervisor crashed removes what it left', async () => {
    const up = await bpfleet(['dev', 'up', '--name', NAME, '--hosts', '1', '--driver', 'sim', '--pps', '0']);
    assert.equal(up.code, 0, up.stdout + up.stderr);
    const state = readState();
    process.kill(state.supervisor.pid, 'SIGKILL');
    const status = await bpfleet(['dev', 'status', '--name', NAME]);
    assert.equal(status.code, 1);
    assert.match(status.stdout, /not running \(supervisor \d+ is gone/);
    assert.ok((await leftovers(state)).length > 0, 'a killed supervisor leaves its daemons and namespaces');
    const down = await bpfleet(['dev', 'down', '--name', NAME]);
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stdout, /swept \d+ leftovers of a crash/);
    assert.deepEqual(await leftovers(state), []);
  });
});
