/**
 * An etcd outage in the middle of a rollback (issue 11, kind 2): real etcd, nats-server,
 * control plane and one kernel host. etcd is killed the moment the rollback is recorded and
 * restarted seconds later; the controller's failed passes must be retried until the rollback
 * is done, and the kernel (read with bpftool) must run the old version again.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Etcd3 } from 'etcd3';
import { keys } from '../common/keys.js';
import { LocalFleet } from '../dev/fleet.js';
import * as kernel from './support/bpftool.js';
import { prereqSkip } from './support/prereqs.js';

const skip = await prereqSkip(['root', 'bpf', 'bpffs', 'etcd', 'nats', 'netns', 'nsenter', 'clang']);

interface RolloutJson { id: string; status: { phase: string; message: string; hosts: { host: string; phase: string }[] } }

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const HOST = 'h1';

describe('etcd unavailable mid-rollback', { skip }, () => {
  let fleet: LocalFleet;
  let etcd: Etcd3;
  const cli = (args: string[], stdin?: string) => fleet.cli(args, { stdin, env: { BPFLEET_ACTOR: 'blip@ci' } });
  const get = async (id: string): Promise<RolloutJson> => {
    const r = await cli(['rollout', 'get', id, '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as RolloutJson;
  };
  async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await probe().catch(() => undefined);
      if (v !== undefined) return v;
      if (Date.now() > deadline) assert.fail(`not ${what} after ${timeoutMs} ms`);
      await sleep(250);
    }
  }
  const runningTag = async () => (await kernel.prog(await kernel.hostXdpProgId(fleet, HOST))).tag;

  before(async () => {
    fleet = await LocalFleet.start({ name: 'blip', hosts: 1, trafficPps: 0 });
    etcd = fleet.etcdClient();
    for (const m of ['pass-counter-v1', 'pass-counter-v2']) {
      const r = await cli(['module', 'push', `agent/bpf/${m}.yaml`]);
      assert.equal(r.code, 0, r.stderr);
    }
    const r = await cli(['rollout', 'create', '-f', 'examples/rollout-v1.yaml', '--wait', '--timeout', '60s']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });

  after(async () => {
    etcd?.close();
    await fleet?.stop();
  });

  test('etcd killed as the rollback is recorded, back 3 s later: the rollback completes and the kernel runs the old version', { timeout: 120_000 }, async () => {
    const oldTag = await runningTag();
    const spec = `module: pass-counter\nversion: 2.0.0\nattachment: xdp:eth0\nselector: {role: edge}\nsteps: [{canary: 1}, {pause: {}}, {percent: 100}]\n`;
    const created = await cli(['rollout', 'create', '-f', '-', '-o', 'json'], spec);
    assert.equal(created.code, 0, created.stderr);
    const id = (JSON.parse(created.stdout) as RolloutJson).id;
    await until('paused', async () => ((await get(id)).status.phase === 'ROLLOUT_PHASE_PAUSED' ? true : undefined), 30_000);
    const newTag = await runningTag();
    assert.notEqual(newTag, oldTag, 'the canary runs 2.0.0');

    // Kill etcd the moment the controller records ROLLING_BACK: its next writes (the intent,
    // the host's progress, the final phase) all meet a dead etcd.
    const watcher = await etcd.watch().key(keys.rollout(id)).create();
    let down = false;
    const killed = new Promise<void>((resolve, reject) => {
      watcher.on('put', (kv) => {
        const phase = (JSON.parse(kv.value.toString()) as RolloutJson).status?.phase;
        if (phase !== 'ROLLOUT_PHASE_ROLLING_BACK' || down) return;
        down = true;
        fleet.etcd.kill('SIGKILL').then(resolve, reject);
      });
    });
    try {
      const aborted = await cli(['rollout', 'abort', id, '--reason', 'etcd blip test', '--no-wait']);
      assert.equal(aborted.code, 0, aborted.stdout + aborted.stderr);
      await Promise.race([killed, sleep(30_000).then(() => assert.fail('the rollback was never recorded'))]);
      await sleep(3_000);
    } finally {
      // Whatever failed, etcd comes back: the fleet cannot stop cleanly without it.
      await watcher.cancel().catch(() => undefined);
      if (down) await fleet.etcd.restart();
    }

    const done = await until('final', async () => {
      const r = await get(id);
      return r.status.phase === 'ROLLOUT_PHASE_ABORTED' ? r : undefined;
    }, 60_000);
    assert.equal(done.status.hosts.find((h) => h.host === HOST)?.phase, 'HOST_PHASE_ROLLED_BACK', JSON.stringify(done.status));
    assert.ok(fleet.control.lines().some((l) => l.includes('rollout pass failed; retrying')),
      'a controller pass met the dead etcd and was retried');
    assert.equal(await runningTag(), oldTag, 'the kernel runs 1.0.0 again');
    await until('2.0.0 unloaded', async () => ((await kernel.progs()).some((p) => p.tag === newTag) ? undefined : true), 10_000);
    assert.equal(await etcd.get(keys.activeLock('pass-counter', 'xdp:eth0')).string(), null, 'the attachment is free again');
  });
});
