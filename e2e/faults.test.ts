/**
 * Faults a rollout must come out of (issue 11): real etcd, nats-server, control plane and
 * three agents as processes, on the sim dataplane (these are about the controller).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Etcd3 } from 'etcd3';
import { keys } from '../common/keys.js';
import { LocalFleet } from '../dev/fleet.js';
import { prereqSkip } from './support/prereqs.js';

const skip = await prereqSkip(['root', 'etcd', 'nats', 'netns', 'clang']);

interface RolloutJson { id: string; status: { phase: string; message: string; hosts: { host: string; phase: string; message: string }[] } }

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('faults a rollout comes out of (sim dataplane)', { skip }, () => {
  let fleet: LocalFleet;
  let etcd: Etcd3;
  const cli = (args: string[], stdin?: string) => fleet.cli(args, { stdin, env: { BPFLEET_ACTOR: 'chaos@ci' } });
  const get = async (id: string): Promise<RolloutJson> => {
    const r = await cli(['rollout', 'get', id, '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as RolloutJson;
  };
  async function until(id: string, what: string, ok: (r: RolloutJson) => boolean, timeoutMs: number): Promise<RolloutJson> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await get(id);
      if (ok(r)) return r;
      if (Date.now() > deadline) assert.fail(`rollout ${id} not ${what} after ${timeoutMs} ms: ${JSON.stringify(r.status)}`);
      await sleep(250);
    }
  }

  before(async () => {
    fleet = await LocalFleet.start({ name: 'faults', hosts: 3, driver: 'sim', trafficPps: 0, telemetryIntervalMs: 250 });
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

  test('a canary whose agent dies mid-rollback: the rollback gives up on it, names it, ends, and frees the attachment', async () => {
    const spec = 'module: pass-counter\nversion: 2.0.0\nattachment: xdp:eth0\nselector: {role: edge}\nsteps: [{canary: 1}, {pause: {}}, {percent: 100}]\n';
    const created = await cli(['rollout', 'create', '-f', '-', '-o', 'json'], spec);
    assert.equal(created.code, 0, created.stderr);
    const id = (JSON.parse(created.stdout) as RolloutJson).id;
    const paused = await until(id, 'paused', (r) => r.status.phase === 'ROLLOUT_PHASE_PAUSED', 30_000);
    const canary = paused.status.hosts.find((h) => h.phase === 'HOST_PHASE_UPDATED')!.host;
    fleet.host(canary).agent.signal('SIGKILL');
    await fleet.host(canary).agent.exited;

    const started = Date.now();
    const aborted = await cli(['rollout', 'abort', id, '--reason', 'canary host died']);
    assert.equal(aborted.code, 0, `abort is applied: ${aborted.stdout}${aborted.stderr}`);
    const done = await until(id, 'final', (r) => r.status.phase === 'ROLLOUT_PHASE_ABORTED', 30_000);
    const elapsed = Date.now() - started;
    const host = done.status.hosts.find((h) => h.host === canary)!;
    assert.equal(host.phase, 'HOST_PHASE_RESTORE_FAILED');
    assert.match(done.status.message, new RegExp(`could not restore 1 host: ${canary} \\(not restored to 1\\.0\\.0 after 5 attempts`));
    assert.ok(elapsed < 30_000, `ended in ${elapsed} ms`);
    assert.equal(await etcd.get(keys.activeLock('pass-counter', 'xdp:eth0')).string(), null, 'the attachment is free again');
  });
});
