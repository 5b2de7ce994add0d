/**
 * The walking skeleton end to end, all real: etcd, nats-server with JetStream, the control
 * plane and three agents as processes, each agent inside its host's network namespace and
 * talking to the services over a routed management link (the 'routed' fleet), XDP programs
 * in the kernel on veths inside those namespaces, UDP traffic flowing, and the `bpfleet` CLI
 * as a user runs it. What the kernel runs is read with bpftool, never from the agents.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Etcd3 } from 'etcd3';
import { LocalFleet } from '../dev/fleet.js';
import { listNetns } from '../dev/netns.js';
import * as kernel from './support/bpftool.js';
import { prereqSkip } from './support/prereqs.js';
import { reachesLoopback, tcpListeners } from './support/sockets.js';

const skip = await prereqSkip(['root', 'bpf', 'bpffs', 'etcd', 'nats', 'netns', 'nsenter', 'clang']);

interface RolloutJson {
  id: string;
  status: { phase: string; message: string; hosts: { host: string; wave: number; phase: string }[]; analyses: { verdict: string; summary: string }[] };
}

describe('walking skeleton: canary rollouts on a local fleet', { skip }, () => {
  let fleet: LocalFleet;
  let etcd: Etcd3;
  const progIds = new Map<string, number>();

  const snapshot = async () => etcd.getAll().prefix('/bpfleet/').strings();
  const xdp = (host: string) => kernel.hostXdpProgId(fleet, host);
  const cliJson = <T>(args: string[]) => fleet.cliJson<T>(args);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  before(async () => {
    fleet = await LocalFleet.start({ name: 'e2e', hosts: 3, trafficPps: 1000, network: 'routed' });
    etcd = fleet.etcdClient();
  });

  after(async () => {
    etcd?.close();
    await fleet?.stop();
  });

  test('every daemon listens on its 198.18 address, none on loopback, and agents register that address', async () => {
    assert.match(fleet.servicesAddress, /^198\.1[89]\./);
    const services = new Set([fleet.etcd.process!.pid, fleet.nats.process!.pid, fleet.control.pid]);
    const root = (await tcpListeners()).filter((l) => l.pids.some((p) => services.has(p)));
    // etcd client + peer + metrics (plain HTTP beside its TLS ports), NATS client + monitoring,
    // control API + metrics.
    assert.equal(root.length, 7, JSON.stringify(root));
    for (const l of root) assert.equal(l.address, fleet.servicesAddress, `pid ${l.pids} listens on ${l.address}:${l.port}`);
    for (const h of fleet.hosts) {
      const inside = await tcpListeners(h.netns.netns);
      assert.ok(inside.length >= 1, `${h.name}: nothing listens in ${h.netns.netns}`);
      for (const l of inside) {
        assert.ok(!reachesLoopback(l.address), `${h.name}: ${l.address}:${l.port} reachable over loopback`);
        assert.equal(l.address, h.address, `${h.name}: listens on ${l.address}, not its management address`);
        assert.deepEqual(l.pids, [h.agent.pid], `${h.name}: ${l.address}:${l.port} is not the agent's`);
      }
      assert.equal(h.listen, `${fleet.addressOf(h.name)}:50061`);
    }
    const hosts = await cliJson<{ hosts: { name: string; address: string }[] }>(['hosts']);
    assert.deepEqual(hosts.hosts.map((h) => h.address).sort(), fleet.hosts.map((h) => h.listen).sort());
  });

  test('pushing garbage is refused with a clear error and changes nothing', async () => {
    const before = await snapshot();
    const dir = mkdtempSync(join(tmpdir(), 'bpfleet-e2e-push-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'garbage.o'), 'this is not an object file\n');
    const manifest = (object: string) => `name: junk\nversion: 1.0.0\nobject: ${object}\nprograms: [{name: prog, hook: xdp}]\n`;
    writeFileSync(join(dir, 'garbage.yaml'), manifest('garbage.o'));
    // The head of the node binary running this test: an ELF, just not a BPF one.
    writeFileSync(join(dir, 'host.o'), readFileSync(process.execPath).subarray(0, 64 * 1024));
    writeFileSync(join(dir, 'host-elf.yaml'), manifest('host.o'));
    const r = await fleet.cli(['module', 'push', join(dir, 'garbage.yaml')]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /not an ELF object/);
    const r2 = await fleet.cli(['module', 'push', join(dir, 'host-elf.yaml')]);
    assert.equal(r2.code, 2, r2.stderr);
    assert.match(r2.stderr, /ELF for machine \d+, not BPF/);
    assert.deepEqual(await snapshot(), before);
  });

  test('modules push, and pushing the same version again is a no-op', async () => {
    for (const m of ['pass-counter-v1', 'pass-counter-v2', 'drop-all']) {
      const r = await fleet.cli(['module', 'push', `agent/bpf/${m}.yaml`]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^pushed: pass-counter@/);
    }
    const again = await fleet.cli(['module', 'push', 'agent/bpf/pass-counter-v1.yaml']);
    assert.equal(again.code, 0);
    assert.match(again.stdout, /^already present/);
  });

  test('a rollout naming an unknown module is refused and changes nothing', async () => {
    const before = await snapshot();
    const spec = 'module: pass-counter\nversion: 9.9.9\nattachment: xdp:eth0\nsteps: [{percent: 100}]\n';
    const r = await fleet.cli(['rollout', 'create', '-f', '-'], { stdin: spec });
    assert.equal(r.code, 7, r.stderr);
    assert.match(r.stderr, /module pass-counter@9\.9\.9 not found \(known versions: 1\.0\.0, 2\.0\.0, 3\.0\.0-bad\)/);
    assert.deepEqual(await snapshot(), before);
  });

  test('first install puts 1.0.0 on every host', async () => {
    const r = await fleet.cli(['rollout', 'create', '-f', 'examples/rollout-v1.yaml', '--wait', '--timeout', '60s']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    for (const h of fleet.hosts) {
      const id = await xdp(h.name);
      assert.equal((await kernel.prog(id)).name, 'pass_counter');
      progIds.set(h.name, id);
    }
  });

  test('good rollout: every host ends on 2.0.0 by an atomic swap while traffic keeps flowing', async () => {
    const links = new Map<string, number>();
    const rxBefore = new Map<string, number>();
    const sentBefore = new Map<string, number>();
    const countBefore = new Map<string, bigint>();
    for (const h of fleet.hosts) {
      const link = await kernel.linkOfProg(progIds.get(h.name)!);
      assert.ok(link, `${h.name}: no bpf_link holds the program`);
      links.set(h.name, link.id);
      rxBefore.set(h.name, await kernel.ipInReceives(h.netns.netns));
      sentBefore.set(h.name, h.traffic!.sent());
      countBefore.set(h.name, (await kernel.counters(progIds.get(h.name)!))[0]!);
    }
    const r = await fleet.cli(['rollout', 'create', '-f', 'examples/rollout-v2.yaml', '--wait', '--timeout', '90s']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /analysis \(step 2\): PASS/);
    await sleep(500);
    for (const h of fleet.hosts) {
      const id = await xdp(h.name);
      assert.notEqual(id, progIds.get(h.name), `${h.name}: still the 1.0.0 program`);
      const link = await kernel.linkOfProg(id);
      assert.equal(link?.id, links.get(h.name), `${h.name}: the swap must update the same link, not attach a new one`);
      const c = await kernel.counters(id);
      assert.ok(c[1]! > 0n, `${h.name}: 2.0.0 counts bytes in slot 1, the kernel shows ${c[1]}`);
      assert.ok(c[0]! > countBefore.get(h.name)!, `${h.name}: the persistent packet counter restarted or stalled`);
      const sent = h.traffic!.sent() - sentBefore.get(h.name)!;
      const delivered = (await kernel.ipInReceives(h.netns.netns)) - rxBefore.get(h.name)!;
      assert.ok(sent > 1000, `${h.name}: traffic source sent only ${sent}`);
      assert.ok(delivered >= sent * 0.98, `${h.name}: ${sent} sent during the rollout but only ${delivered} delivered`);
      progIds.set(h.name, id);
    }
  });

  test('bad rollout: drop-all reaches only the canary, is caught and rolled back; other hosts untouched', async () => {
    const r = await fleet.cli(['rollout', 'create', '-f', 'examples/rollout-bad.yaml', '--wait', '--timeout', '90s']);
    assert.equal(r.code, 3, r.stdout + r.stderr);
    const list = await cliJson<{ rollouts: RolloutJson[] }>(['rollout', 'list']);
    const record = list.rollouts.at(-1)! as RolloutJson & { status: { hostCounts?: { total: number } } };
    assert.equal(record.status.hosts, undefined, 'rollout list carries records, not per-host progress');
    assert.equal(record.status.hostCounts?.total, 3);
    const bad = await cliJson<RolloutJson>(['rollout', 'get', record.id]);
    assert.equal(bad.status.phase, 'ROLLOUT_PHASE_ROLLED_BACK');
    assert.match(bad.status.message, /drop_rate/);
    assert.ok(bad.status.analyses.some((a) => a.verdict === 'VERDICT_FAIL'));
    const touched = bad.status.hosts.filter((h) => h.phase !== 'HOST_PHASE_PENDING').map((h) => h.host);
    assert.equal(touched.length, 1, `only the canary may be touched, got ${touched.join(', ')}`);
    const canary = touched[0]!;
    await sleep(300);
    for (const h of fleet.hosts) {
      const id = await xdp(h.name);
      if (h.name === canary) {
        const c = await kernel.counters(id);
        assert.equal((await kernel.prog(id)).name, 'pass_counter');
        const before = await kernel.ipInReceives(h.netns.netns);
        await sleep(500);
        assert.ok((await kernel.ipInReceives(h.netns.netns)) > before + 100, 'canary must deliver traffic again after the rollback');
        assert.ok(c[1]! > 0n, 'canary must run 2.0.0 again (it counts bytes)');
      } else {
        assert.equal(id, progIds.get(h.name), `${h.name} was not in the canary wave but its program changed`);
      }
    }
  });

  test('an agent killed with SIGKILL leaves its program running, and the new agent adopts it', async () => {
    const h = fleet.host('h1');
    const id = await xdp('h1');
    const countBefore = (await kernel.progs()).filter((p) => p.name === 'pass_counter').length;
    await h.agent.kill();
    const rx = await kernel.ipInReceives(h.netns.netns);
    await sleep(500);
    assert.equal(await xdp('h1'), id, 'the program must stay attached with no agent');
    assert.ok((await kernel.ipInReceives(h.netns.netns)) > rx + 100, 'traffic must keep flowing with no agent');
    const agent = await fleet.startAgent('h1');
    await agent.waitForLine(/adopted running program/, 10_000);
    assert.equal(await xdp('h1'), id, 'the restarted agent must not reload');
    assert.equal((await kernel.progs()).filter((p) => p.name === 'pass_counter').length, countBefore, 'no second copy may be loaded');
    const hosts = await cliJson<{ hosts: { name: string; attachments: { progId: number }[] }[] }>(['hosts']);
    assert.equal(hosts.hosts.find((x) => x.name === 'h1')?.attachments[0]?.progId, id);
  });

  test('teardown leaves no namespace, pin or process behind', async () => {
    const procs = [fleet.control, ...fleet.hosts.map((h) => h.agent)];
    const pins = fleet.hosts.map((h) => h.pinRoot.path);
    await fleet.stop();
    assert.deepEqual((await listNetns()).filter((n) => n.startsWith('bpfleet-e2e-')), []);
    const bpffs = readdirSync('/sys/fs/bpf');
    for (const p of pins) assert.ok(!bpffs.includes(p.split('/').pop()!), `${p} still pinned`);
    for (const p of procs) assert.equal(p.running, false, `${p.name} still running`);
  });
});
