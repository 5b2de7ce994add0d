/**
 * Hosts come and go (issue 11, kind 9), all real: etcd, nats-server, the control plane and
 * three agents driving XDP programs in the kernel. A host that is down while a rollout runs
 * is named as skipped, flagged as lagging when it returns, and converged to the promoted
 * version by the leader; what the kernel runs is read with bpftool.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { LocalFleet } from '../dev/fleet.js';
import { ControlServiceClient, type Host } from '../proto/gen/bpfleet/v1/control.js';
import * as kernel from './support/bpftool.js';
import { prereqSkip } from './support/prereqs.js';

const skip = await prereqSkip(['root', 'bpf', 'bpffs', 'etcd', 'nats', 'netns', 'clang']);

interface RolloutJson {
  id: string;
  status: { phase: string; message: string; skippedTotal?: number; skippedHosts?: { host: string; reason: string }[]; hosts: { host: string; wave?: number; phase: string; message?: string }[] };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('hosts that come and go', { skip }, () => {
  let fleet: LocalFleet;
  let api: ControlServiceClient;

  const listHosts = () => new Promise<Host[]>((resolve, reject) => api.listHosts({}, (err, res) => (err ? reject(err) : resolve(res.hosts))));
  const tagOf = async (host: string) => (await kernel.prog(await kernel.hostXdpProgId(fleet, host))).tag;
  const get = (id: string) => fleet.cliJson<RolloutJson>(['rollout', 'get', id]);
  async function until<T>(what: string, probe: () => Promise<T | null | undefined | false>, timeoutMs: number, everyMs = 200): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await probe();
      if (v) return v;
      if (Date.now() > deadline) assert.fail(`${what}: not after ${timeoutMs} ms`);
      await sleep(everyMs);
    }
  }

  before(async () => {
    fleet = await LocalFleet.start({ name: 'comego', hosts: 3, trafficPps: 0 });
    api = new ControlServiceClient(fleet.controlAddress, fleet.credentials('admin'));
    for (const m of ['pass-counter-v1', 'pass-counter-v2']) {
      const r = await fleet.cli(['module', 'push', `agent/bpf/${m}.yaml`]);
      assert.equal(r.code, 0, r.stderr);
    }
    const r = await fleet.cli(['rollout', 'create', '-f', 'examples/rollout-v1.yaml', '--wait', '--timeout', '60s']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });

  after(async () => {
    api?.close();
    await fleet?.stop();
  });

  test('a host down during a rollout is named as skipped, lags when it returns, and converges to the promoted version', async () => {
    assert.deepEqual((await listHosts()).map((h) => [h.name, h.lagging]), fleet.hosts.map((h) => [h.name, []]), 'everyone runs the desired 1.0.0');
    const v1Tag = await tagOf('h1');

    const spec = 'module: pass-counter\nversion: 2.0.0\nattachment: xdp:eth0\nselector: {role: edge}\nmaxUnavailable: 2\nsteps: [{canary: 1}, {pause: {}}, {percent: 100}]\n';
    const created = await fleet.cli(['rollout', 'create', '-f', '-', '-o', 'json'], { stdin: spec });
    assert.equal(created.code, 0, created.stderr);
    const id = (JSON.parse(created.stdout) as RolloutJson).id;
    const paused = await until('paused at the pause step', async () => {
      const r = await get(id);
      return r.status.phase === 'ROLLOUT_PHASE_PAUSED' && r;
    }, 30_000, 300);
    const down = paused.status.hosts.find((h) => h.phase === 'HOST_PHASE_PENDING')?.host;
    const canary = paused.status.hosts.find((h) => h.phase === 'HOST_PHASE_UPDATED')?.host;
    assert.ok(down && canary, JSON.stringify(paused.status));
    await fleet.host(down).agent.stop();
    await until(`${down} deregistered`, async () => !(await listHosts()).some((h) => h.name === down), 15_000);

    const resumed = await fleet.cli(['rollout', 'resume', id]);
    assert.equal(resumed.code, 0, resumed.stdout + resumed.stderr);
    const done = await until('succeeded', async () => {
      const r = await get(id);
      return r.status.phase !== 'ROLLOUT_PHASE_PAUSED' && r.status.phase !== 'ROLLOUT_PHASE_PROGRESSING' && r;
    }, 30_000, 300);
    assert.equal(done.status.phase, 'ROLLOUT_PHASE_SUCCEEDED', done.status.message);
    assert.equal(done.status.hosts.find((h) => h.host === down)!.phase, 'HOST_PHASE_SKIPPED');
    assert.deepEqual(done.status.skippedHosts, [{ host: down, reason: 'not registered when its wave ran' }]);
    assert.equal(done.status.message, `2 of 3 selected hosts run pass-counter@2.0.0; skipped 1: ${down} (not registered when its wave ran)`);
    const text = await fleet.cli(['rollout', 'get', id]);
    assert.match(text.stdout, new RegExp(`3 hosts selected, 1 skipped: ${down} \\(not registered when its wave ran\\)`));
    const v2Tag = await tagOf(canary);
    assert.notEqual(v2Tag, v1Tag);
    assert.equal(await tagOf(down), v1Tag, 'the kernel still runs 1.0.0 on the host that was down');

    await fleet.startAgent(down);
    const lagging = await until(`${down} registered again`, async () => (await listHosts()).find((h) => h.name === down), 10_000, 50);
    assert.deepEqual(lagging.lagging, [{ attachment: 'xdp:eth0', module: 'pass-counter', desiredVersion: '2.0.0', runningVersion: '1.0.0', reason: 'OTHER_VERSION' }],
      'flagged as lagging before the converger moves it');

    await until(`${down} runs 2.0.0 in the kernel`, async () => (await tagOf(down)) === v2Tag, 20_000, 250);
    await until('no host lags', async () => (await listHosts()).every((h) => h.lagging.length === 0), 10_000);
    const hosts = await fleet.cli(['hosts']);
    assert.equal(hosts.code, 0, hosts.stderr);
    const lines = hosts.stdout.trim().split('\n');
    assert.equal(lines.length, 3, hosts.stdout);
    for (const line of lines) assert.match(line, /xdp:eth0=pass-counter@2\.0\.0\(prog \d+\)  LAG -$/);
  });
});
