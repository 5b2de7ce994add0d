/**
 * Day-2 verbs end to end, all real (etcd, NATS with JetStream, the control plane, two agents
 * in their own network namespaces, XDP in the kernel), through the `bpfleet` CLI: a drain
 * removes the host's programs (read with bpftool, never from the agent), is refused while a
 * rollout holds the host, keeps the host out of the next rollout until undrain; a module
 * version cannot be retired while a host runs it, and once retired its object is gone from
 * the object store and it cannot be rolled out.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect } from '@nats-io/transport-node';
import { Etcd3 } from 'etcd3';
import { ArtifactStore } from '../common/artifacts.js';
import { LocalFleet } from '../dev/fleet.js';
import * as kernel from './support/bpftool.js';
import { prereqSkip } from './support/prereqs.js';

const skip = await prereqSkip(['root', 'bpf', 'bpffs', 'etcd', 'nats', 'netns', 'nsenter', 'clang']);

interface HostsJson {
  hosts: { name: string; attachments?: { version: string }[] }[];
  drains?: { host: string; state: string; message: string }[];
}

interface RolloutJson {
  id: string;
  status: { phase: string; message: string; hosts: { host: string }[] };
}

const spec = (version: string, steps = '[{percent: 100}]') => `module: pass-counter\nversion: ${version}\nattachment: xdp:eth0\nsteps: ${steps}\n`;

describe('day-2 verbs: drain, undrain, retire', { skip }, () => {
  let fleet: LocalFleet;
  let etcd: Etcd3;
  let drained: string;
  let other: string;

  const xdpOf = (host: string) => kernel.xdpProgId(fleet.host(host).netns.netns, 'eth0');
  const audit = async () => Object.values(await etcd.getAll().prefix('/bpfleet/audit/').strings()).map((v) => JSON.parse(v) as { action: string; target: string; actor: string });

  before(async () => {
    fleet = await LocalFleet.start({ name: 'day2', hosts: 2, trafficPps: 0, network: 'routed' });
    etcd = fleet.etcdClient();
    [drained, other] = fleet.hosts.map((h) => h.name) as [string, string];
    for (const m of ['pass-counter-v1', 'pass-counter-v2']) {
      const r = await fleet.cli(['module', 'push', `agent/bpf/${m}.yaml`]);
      assert.equal(r.code, 0, r.stderr);
    }
    const r = await fleet.cli(['rollout', 'create', '-f', '-', '--wait', '--timeout', '60s'], { stdin: spec('1.0.0') });
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });

  after(async () => {
    etcd?.close();
    await fleet?.stop();
  });

  test('a drain is refused while an unfinished rollout holds the host, naming the rollout', async () => {
    const paused = await fleet.cli(['rollout', 'create', '-f', '-', '--wait', '--timeout', '60s', '-o', 'json'], { stdin: spec('2.0.0', '[{percent: 100}, {pause: {}}]') });
    assert.equal(paused.code, 6, paused.stdout + paused.stderr);
    const id = (JSON.parse(paused.stdout) as RolloutJson).id;
    const r = await fleet.cli(['hosts', 'drain', drained]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`cannot drain ${drained}: unfinished rollout ${id} includes it`));
    assert.deepEqual((await fleet.cliJson<HostsJson>(["hosts"])).drains ?? [], [], "nothing recorded");
    const abort = await fleet.cli(['rollout', 'abort', id, '--timeout', '30s']);
    assert.equal(abort.code, 0, abort.stderr);
    const done = await fleet.cli(['rollout', 'status', id, '--timeout', '60s']);
    assert.equal(done.code, 4, done.stdout + done.stderr);
  });

  test('drain removes every program from the host (bpftool), recorded and visible as drained', async () => {
    assert.ok(await xdpOf(drained), 'runs 1.0.0 before the drain');
    const viewer = await fleet.cli(['hosts', 'drain', drained], { as: 'viewer' });
    assert.notEqual(viewer.code, 0);
    assert.match(viewer.stderr, /needs role operator/);
    const r = await fleet.cli(['hosts', 'drain', drained, '--reason', 'kernel upgrade', '--timeout', '30s', '-o', 'json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal((JSON.parse(r.stdout) as { drain: { state: string } }).drain.state, 'DRAIN_STATE_DRAINED');
    assert.equal(await xdpOf(drained), null, 'the kernel runs no XDP program on the drained host');
    assert.ok(await xdpOf(other), 'the other host is untouched');
    const hosts = await fleet.cliJson<HostsJson>(['hosts']);
    assert.deepEqual(hosts.drains?.map((d) => [d.host, d.state]), [[drained, 'DRAIN_STATE_DRAINED']]);
    assert.deepEqual(hosts.hosts.find((h) => h.name === drained)?.attachments ?? [], []);
    const text = await fleet.cli(['hosts']);
    assert.match(text.stdout, new RegExp(`${drained} .*\\[drained\\] \\(nothing attached\\)`));
    const entries = await audit();
    assert.ok(entries.some((e) => e.action === 'host.drain' && e.target === drained && e.actor.includes('admin')), JSON.stringify(entries.filter((e) => e.action.startsWith('host.'))));
    assert.ok(entries.some((e) => e.action === 'host.drained' && e.target === drained));
  });

  test('a rollout after the drain skips the drained host; undrain puts it back', async () => {
    const r = await fleet.cli(['rollout', 'create', '-f', '-', '--wait', '--timeout', '60s', '-o', 'json'], { stdin: spec('2.0.0') });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual((JSON.parse(r.stdout) as RolloutJson).status.hosts.map((h) => h.host), [other]);
    assert.equal(await xdpOf(drained), null, 'still nothing on the drained host');
    const undrain = await fleet.cli(['hosts', 'undrain', drained]);
    assert.equal(undrain.code, 0, undrain.stderr);
    const again = await fleet.cli(['rollout', 'create', '-f', '-', '--wait', '--timeout', '60s', '-o', 'json'], { stdin: spec('2.0.0') });
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.deepEqual((JSON.parse(again.stdout) as RolloutJson).status.hosts.map((h) => h.host).sort(), [drained, other].sort());
    const id = await kernel.hostXdpProgId(fleet, drained);
    assert.equal((await kernel.prog(id)).name, 'pass_counter');
  });

  test('retire is refused while a host runs the version, and once accepted collects the object', async () => {
    const refused = await fleet.cli(['module', 'retire', 'pass-counter', '2.0.0']);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /cannot retire pass-counter@2\.0\.0: running on /);
    for (const h of [drained, other]) assert.match(refused.stderr, new RegExp(h));
    const operator = await fleet.cli(['module', 'retire', 'pass-counter', '1.0.0'], { as: 'operator' });
    assert.match(operator.stderr, /needs role publisher/);

    const v1 = (await fleet.cliJson<{ modules: { digest: string; manifest: { version: string } }[] }>(['module', 'list', 'pass-counter'])).modules.find((m) => m.manifest.version === '1.0.0')!;
    const nc = await connect(fleet.natsOptions());
    after(() => nc.close());
    const objects = await ArtifactStore.open(nc, { create: false });
    assert.ok(await objects.has(v1.digest));
    const r = await fleet.cli(['module', 'retire', 'pass-counter', '1.0.0', '--reason', 'replaced']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /retired: pass-counter@1\.0\.0 .*\(object deleted\)/);
    assert.equal(await objects.has(v1.digest), false, 'the object is gone from the object store');
    const listed = await fleet.cliJson<{ modules: { manifest: { version: string } }[] }>(['module', 'list', 'pass-counter']);
    assert.deepEqual(listed.modules.map((m) => m.manifest.version), ['2.0.0']);
    const rollout = await fleet.cli(['rollout', 'create', '-f', '-'], { stdin: spec('1.0.0') });
    assert.equal(rollout.code, 2, rollout.stderr);
    assert.match(rollout.stderr, /pass-counter@1\.0\.0 was retired by .* at .*; roll out another version/);
    const push = await fleet.cli(['module', 'push', 'agent/bpf/pass-counter-v1.yaml']);
    assert.equal(push.code, 2, push.stderr);
    assert.match(push.stderr, /was retired by .*a retired version is never reused/);
    assert.ok((await audit()).some((e) => e.action === 'module.retire' && e.target === 'pass-counter@1.0.0'));
  });

  test('decommission drains the host, then forgets it: registration, observed state and intents deleted, the drain kept', async () => {
    assert.ok(await xdpOf(other));
    const r = await fleet.cli(['hosts', 'decommission', other, '--timeout', '30s']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`${other}: decommissioned \\(decommission\\)`));
    assert.equal(await xdpOf(other), null, 'the kernel runs nothing on the decommissioned host');
    for (const prefix of [`/bpfleet/hosts/${other}`, `/bpfleet/observed/${other}`, `/bpfleet/intents/${other}/`]) {
      assert.deepEqual(await etcd.getAll().prefix(prefix).keys(), [], `${prefix} deleted`);
    }
    const hosts = await fleet.cliJson<HostsJson>(['hosts']);
    assert.ok(!hosts.hosts.some((h) => h.name === other), 'no longer registered');
    assert.deepEqual(hosts.drains?.filter((d) => d.host === other).map((d) => d.state), ['DRAIN_STATE_DECOMMISSIONED']);
    assert.match((await fleet.cli(['hosts'])).stdout, new RegExp(`${other} +\\(not registered\\) +\\[decommissioned\\]`));
  });
});
