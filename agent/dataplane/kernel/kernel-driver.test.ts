/**
 * The kernel driver against the real kernel, in network namespaces of its own. What the
 * conformance suite checks for every driver is in conformance.test.ts; this file checks
 * what only the kernel can show, with bpftool and packet counters as witnesses.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Attachment } from '../../../common/attachment.js';
import { BpfleetError } from '../../../common/errors.js';
import { run } from '../../../dev/processes.js';
import { startBlaster } from '../../../dev/traffic.js';
import { artifactOf, bpftoolLink, bpftoolProgs, bpftoolXdpProgId, buildModules, createSandbox, modules, type Sandbox } from '../../../e2e/support/kernel-sandbox.js';
import { prereqSkip } from '../../../e2e/support/prereqs.js';
import type { DataplaneDriver, ModuleArtifact, ProgramStats } from '../driver.js';
import { UNKNOWN_DIGEST } from './kernel-driver.js';
import * as bpf from './libbpf.js';
import { NetnsSwitch } from './netns.js';
import { ipInReceives } from './counters.js';
import { AttachmentPins, pinCard } from './pins.js';

const skip = await prereqSkip(['root', 'bpffs', 'bpf', 'netns', 'nsenter', 'clang']);
if (!skip) buildModules();

const DISCARD_PORT = 9;

async function sandbox(t: TestContext): Promise<Sandbox> {
  const sb = await createSandbox();
  t.after(() => sb.destroy());
  return sb;
}

function counter(stats: ProgramStats | null, name: string): bigint {
  const value = stats?.counters[name];
  assert.ok(value !== undefined, `counter ${name} in ${JSON.stringify(stats, (_, v) => (typeof v === 'bigint' ? String(v) : v))}`);
  return value;
}

/** Stats once the traffic has drained, so counters read side by side agree. */
async function settledStats(driver: DataplaneDriver, attachment: Attachment): Promise<ProgramStats> {
  await sleep(200);
  const stats = await driver.stats(attachment);
  assert.ok(stats);
  return stats;
}

/**
 * Swaps `versions` in turn under a UDP flood from the root namespace, and checks that the
 * link stayed, the program changed each time (per bpftool), and that every packet that
 * reached the interface was counted by some version: a moment without a program would let
 * packets in uncounted. Returns the swap timings.
 */
async function swapUnderTraffic(sb: Sandbox, driver: DataplaneDriver, attachment: Attachment, versions: ModuleArtifact[]): Promise<number[]> {
  const [first, ...rest] = versions;
  assert.ok(first);
  const installed = await driver.install(attachment, first, null);
  const before = await settledStats(driver, attachment);

  const blaster = startBlaster({ target: sb.host.hostAddr, port: DISCARD_PORT, durationMs: 1500, tool: 'node' });
  const swapMs: number[] = [];
  try {
    await waitForTraffic(driver, attachment, before);
    let expected = first.digest;
    for (const next of rest) {
      const result = await driver.install(attachment, next, expected);
      swapMs.push(result.timing.swapMs);
      assert.equal(result.changed, true);
      assert.equal(result.running.linkId, installed.running.linkId, 'the link stays');
      const link = await bpftoolLink(result.running.linkId);
      assert.equal(link.prog_id, result.running.progId, 'bpftool sees the new program on the link');
      expected = next.digest;
      await sleep(150);
    }
  } finally {
    await blaster.stop();
  }
  const { sent } = await blaster.done;
  const after = await settledStats(driver, attachment);

  const arrived = after.ifaceRxPackets! - before.ifaceRxPackets!;
  const counted = counter(after, 'packets') - counter(before, 'packets');
  assert.ok(arrived > 1000n, `traffic arrived (${arrived} of ${sent} sent)`);
  assert.ok(arrived <= BigInt(sent));
  assert.equal(counted, arrived, 'every packet that arrived met a program, and the pinned counter kept counting across swaps');
  return swapMs;
}

async function waitForTraffic(driver: DataplaneDriver, attachment: Attachment, before: ProgramStats): Promise<void> {
  const deadline = Date.now() + 5000;
  while ((await driver.stats(attachment))?.ifaceRxPackets === before.ifaceRxPackets) {
    assert.ok(Date.now() < deadline, 'traffic reached the interface within 5 s');
    await sleep(10);
  }
}

describe('KernelDriver on the real kernel', { skip }, () => {
  it('probes xdp and tcx', async (t) => {
    const sb = await sandbox(t);
    assert.deepEqual(sb.driver().capabilities(), ['xdp', 'tcx-ingress', 'tcx-egress']);
  });

  it('xdp: swaps versions on one link under traffic without losing a packet to "no program"', async (t) => {
    const sb = await sandbox(t);
    const driver = sb.driver();
    const attachment = sb.attachment('xdp');
    const [v1, v2] = [modules.passV1(), modules.passV2()];
    const ownNetns = readlinkSync('/proc/thread-self/ns/net');

    const swapMs = await swapUnderTraffic(sb, driver, attachment, [v1, v2, v1, v2, v1, v2]);
    t.diagnostic(`xdp bpf_link_update under traffic, ms: ${swapMs.map((ms) => ms.toFixed(2)).join(' ')}`);

    const [running] = await driver.observe();
    assert.ok(running);
    assert.deepEqual([running.digest, running.name, running.version], [v2.digest, 'pass-counter', '2.0.0']);
    assert.equal(await bpftoolXdpProgId(sb.host.netns, sb.host.iface), running.progId);
    const pins = new AttachmentPins(sb.pinRoot.path, attachment);
    assert.deepEqual(readdirSync(pins.progsDir), [v2.digest.slice('sha256:'.length)], 'only the running program stays pinned');
    assert.equal(readlinkSync('/proc/thread-self/ns/net'), ownNetns, 'the driver returned to its own netns');
  });

  it('tcx-ingress: swaps versions on one link under traffic', async (t) => {
    const sb = await sandbox(t);
    const driver = sb.driver();
    const attachment = sb.attachment('tcx-ingress');
    const [v1, v2] = [modules.tcxV1(), modules.tcxV2()];

    const swapMs = await swapUnderTraffic(sb, driver, attachment, [v1, v2, v1, v2]);
    t.diagnostic(`tcx bpf_link_update under traffic, ms: ${swapMs.map((ms) => ms.toFixed(3)).join(' ')}`);

    const stats = await driver.stats(attachment);
    assert.ok(counter(stats, 'bytes') > 0n, 'v2 counts bytes too');
    const [running] = await driver.observe();
    assert.ok(running);
    assert.equal(running.version, '2.0.0');
    const link = await bpftoolLink(running.linkId);
    assert.equal(link.prog_id, running.progId);
  });

  it('tcx-egress: installs, swaps and removes', async (t) => {
    const sb = await sandbox(t);
    const driver = sb.driver();
    const attachment = sb.attachment('tcx-egress');
    const first = await driver.install(attachment, modules.tcxV1('tcx-egress'), null);
    const second = await driver.install(attachment, modules.tcxV2('tcx-egress'), first.running.digest);
    assert.equal(second.running.linkId, first.running.linkId);
    assert.equal((await bpftoolLink(second.running.linkId)).prog_id, second.running.progId);
    await driver.remove(attachment);
    await assert.rejects(bpftoolLink(second.running.linkId), 'the link is gone');
  });

  it('re-installing what runs changes nothing and loads nothing', async (t) => {
    const sb = await sandbox(t);
    const driver = sb.driver();
    const attachment = sb.attachment('xdp');
    const v1 = modules.passV1();
    const installed = await driver.install(attachment, v1, null);
    const progsBefore = await bpftoolProgs();

    const again = await driver.install(attachment, v1, v1.digest);

    assert.equal(again.changed, false);
    assert.deepEqual(again.running, installed.running);
    assert.deepEqual((await bpftoolProgs()).filter((p) => p.tag === installed.running.progTag && p.id > installed.running.progId), []);
    assert.equal(progsBefore.some((p) => p.id === installed.running.progId), true);
  });

  it('refuses a swap when a program was changed behind its back, and keeps it running', async (t) => {
    const sb = await sandbox(t);
    const driver = sb.driver();
    const attachment = sb.attachment('xdp');
    const [v1, v2] = [modules.passV1(), modules.passV2()];
    await driver.install(attachment, v1, null);

    // Someone else swaps in drop-all through our pinned link, without pinning it.
    const pins = new AttachmentPins(sb.pinRoot.path, attachment);
    const foreign = bpf.BpfObject.open(modules.dropAll().object, 'foreign');
    t.after(() => foreign.close());
    await foreign.load();
    const foreignProg = foreign.program('pass_counter')!;
    const linkFd = bpf.objGet(pins.link);
    const oldFd = bpf.objGet(pins.prog(v1.digest));
    try {
      bpf.linkUpdate(linkFd, foreignProg.fd, oldFd);
    } finally {
      bpf.closeFd(oldFd);
      bpf.closeFd(linkFd);
    }
    const foreignId = bpf.progInfo(foreignProg.fd).id;

    const [running] = await driver.observe();
    assert.ok(running);
    assert.deepEqual([running.digest, running.progId, running.name], [UNKNOWN_DIGEST, foreignId, '']);

    for (const expected of [v1.digest, UNKNOWN_DIGEST, null]) {
      await assert.rejects(driver.install(attachment, v2, expected), (err) => {
        assert.ok(err instanceof BpfleetError);
        assert.deepEqual([err.code, err.reason], ['FAILED_PRECONDITION', 'DRIFT']);
        assert.match(err.message, /a program bpfleet did not install/);
        return true;
      });
    }
    assert.equal(await bpftoolXdpProgId(sb.host.netns, sb.host.iface), foreignId, 'the foreign program still runs');
    const [still] = await driver.observe();
    assert.equal(still?.progId, foreignId);
  });

  it('rejects bad modules with distinct errors and leaves the running module alone', async (t) => {
    const sb = await sandbox(t);
    const driver = sb.driver();
    const xdp = sb.attachment('xdp');
    const v1 = modules.passV1();
    const installed = await driver.install(xdp, v1, null);
    await driver.install(sb.attachment('tcx-ingress'), modules.tcxV1(), null);
    const noProgram = artifactOf(modules.passV2().object, { name: 'pass-counter', version: '9.0.0-renamed', program: 'renamed' });
    const xdpObjectClaimingTcx = artifactOf(v1.object, { name: 'pass-counter', version: '9.0.0-tcx', hook: 'tcx-ingress' });

    const cases: Array<{ label: string; attachment: Attachment; artifact: ModuleArtifact; reason: string; message: RegExp; detail?: RegExp }> = [
      { label: 'garbage bytes', attachment: xdp, artifact: modules.garbage(), reason: 'NOT_ELF', message: /not an ELF object/ },
      { label: '/bin/true', attachment: xdp, artifact: modules.notBpfElf(), reason: 'NOT_BPF_ELF', message: /ELF for machine 62, not BPF/ },
      { label: 'a tcx module on xdp', attachment: xdp, artifact: modules.tcxV2(), reason: 'WRONG_HOOK', message: /hook xdp/ },
      { label: 'an xdp program claimed as tcx', attachment: sb.attachment('tcx-ingress'), artifact: xdpObjectClaimingTcx, reason: 'WRONG_HOOK', message: /pass_counter is of type xdp, hook tcx-ingress needs sched_cls/ },
      { label: 'a missing program', attachment: xdp, artifact: noProgram, reason: 'NO_PROGRAM', message: /no program named renamed.*has: pass_counter/ },
      { label: 'a resized counters map', attachment: xdp, artifact: modules.countersResized(), reason: 'MAP_INCOMPATIBLE', message: /bpfleet_counters.*max_entries 8 pinned, 16 in module/ },
      { label: 'an out-of-bounds read', attachment: xdp, artifact: modules.verifierReject(), reason: 'VERIFIER_REJECTED', message: /verifier rejected pass_counter: R1 offset is outside of the packet/, detail: /invalid access to packet/ },
    ];
    const before = await driver.observe();
    const reasons = new Set<string>();
    for (const c of cases) {
      const running = before.find((r) => r.attachment === `${c.attachment.hook}:${c.attachment.iface}`);
      await assert.rejects(driver.install(c.attachment, c.artifact, running?.digest ?? null), (err) => {
        assert.ok(err instanceof BpfleetError, `${c.label}: ${String(err)}`);
        assert.deepEqual([err.code, err.reason], ['INVALID_ARGUMENT', c.reason], `${c.label}: ${err.message}`);
        assert.match(err.message, c.message, c.label);
        if (c.detail) assert.match(err.detail ?? '', c.detail, `${c.label}: detail`);
        return true;
      }, c.label);
      reasons.add(`${c.reason}: ${c.message.source}`);
      assert.deepEqual(await driver.observe(), before, `${c.label}: nothing changed`);
    }
    assert.equal(reasons.size, cases.length);
    assert.equal(await bpftoolXdpProgId(sb.host.netns, sb.host.iface), installed.running.progId);
    const pins = new AttachmentPins(sb.pinRoot.path, xdp);
    assert.deepEqual(readdirSync(pins.progsDir), [v1.digest.slice('sha256:'.length)], 'no pin left from the failed installs');
    assert.deepEqual(readdirSync(pins.mapsDir), ['bpfleet_counters']);
  });

  it('a new driver on the same pin root adopts the running link without loading a second copy', async (t) => {
    const sb = await sandbox(t);
    const first = sb.driver();
    const attachment = sb.attachment('xdp');
    const [v1, v2] = [modules.passV1(), modules.passV2()];
    const installed = await first.install(attachment, v1, null);
    await first.close();
    assert.equal(await bpftoolXdpProgId(sb.host.netns, sb.host.iface), installed.running.progId, 'pinned link outlives close()');
    const progsBefore = await bpftoolProgs();

    const second = sb.driver();
    assert.deepEqual(await second.observe(), [installed.running]);
    assert.deepEqual((await second.install(attachment, v1, v1.digest)).running, installed.running);

    const progsAfter = await bpftoolProgs();
    assert.deepEqual(progsAfter.filter((p) => p.tag === installed.running.progTag).map((p) => p.id),
      progsBefore.filter((p) => p.tag === installed.running.progTag).map((p) => p.id), 'no second copy of v1');
    const upgraded = await second.install(attachment, v2, v1.digest);
    assert.equal(upgraded.running.linkId, installed.running.linkId);
  });

  it('observe() collects the pins an interrupted install left behind', async (t) => {
    const sb = await sandbox(t);
    const driver = sb.driver();
    const xdp = sb.attachment('xdp');
    const [v1, v2] = [modules.passV1(), modules.passV2()];
    const installed = await driver.install(xdp, v1, null);

    // A crash after pinning v2 and before swapping; and one in a first install, before the link.
    const xdpPins = new AttachmentPins(sb.pinRoot.path, xdp);
    const tcxPins = new AttachmentPins(sb.pinRoot.path, sb.attachment('tcx-ingress'));
    for (const [pins, artifact] of [[xdpPins, v2], [tcxPins, modules.tcxV1()]] as const) {
      const obj = bpf.BpfObject.open(artifact.object, 'interrupted');
      try {
        const prog = obj.program(artifact.manifest.programs[0]!.name)!;
        if (prog.type === bpf.BPF_PROG_TYPE_UNSPEC) prog.setType(bpf.BPF_PROG_TYPE_SCHED_CLS);
        await obj.load();
        pins.ensureDirs();
        pinCard(pins.card(artifact.digest), { name: artifact.manifest.name, version: artifact.manifest.version, counters: [] });
        bpf.objPin(prog.fd, pins.prog(artifact.digest));
      } finally {
        obj.close();
      }
    }

    assert.deepEqual(await driver.observe(), [installed.running]);
    assert.deepEqual(readdirSync(xdpPins.progsDir), [v1.digest.slice('sha256:'.length)]);
    assert.deepEqual(readdirSync(xdpPins.cardsDir), [v1.digest.slice('sha256:'.length)]);
    assert.equal(existsSync(tcxPins.dir), false, 'the link-less attachment is gone');
  });

  it('stats: run counts and counters, and which packet counter exposes a module that drops traffic', async (t) => {
    const sb = await sandbox(t);
    const driver = sb.driver();
    const attachment = sb.attachment('xdp');
    const [v1, dropAll] = [modules.passV1(), modules.dropAll()];

    const blast = async (): Promise<{ before: ProgramStats; after: ProgramStats; runs: bigint }> => {
      const before = await settledStats(driver, attachment);
      await startBlaster({ target: sb.host.hostAddr, port: DISCARD_PORT, durationMs: 400, tool: 'node' }).done;
      const after = await settledStats(driver, attachment);
      const runs = after.runCount - before.runCount;
      assert.ok(runs > 1000n, `the program ran (${runs})`);
      assert.ok(after.runTimeNs > before.runTimeNs);
      assert.equal(counter(after, 'packets') - counter(before, 'packets'), runs);
      return { before, after, runs };
    };

    await driver.install(attachment, v1, null);
    const pass = await blast();
    assert.equal(pass.after.ifaceRxPackets! - pass.before.ifaceRxPackets!, pass.runs);
    assert.equal(pass.after.stackRxPackets! - pass.before.stackRxPackets!, pass.runs, 'passed packets reach the IP layer');

    await driver.install(attachment, dropAll, v1.digest);
    const drop = await blast();
    assert.equal(drop.after.stackRxPackets! - drop.before.stackRxPackets!, 0n, 'dropped packets never reach the IP layer');
    // Not what the telemetry contract assumed: veth counts a packet in rx_packets before its
    // XDP program runs, so XDP_DROP'ped packets are in it.
    assert.equal(drop.after.ifaceRxPackets! - drop.before.ifaceRxPackets!, drop.runs, 'veth rx_packets counts XDP drops');
  });

  it('stats: the drop witness counts the attached interface only, so loopback traffic hides no drops', async (t) => {
    const sb = await sandbox(t);
    const driver = sb.driver();
    const attachment = sb.attachment('xdp');
    await driver.install(attachment, modules.dropAll(), null);
    const witness = new AttachmentPins(sb.pinRoot.path, attachment).witness;
    assert.ok(existsSync(witness), 'the witness is pinned beside the link');

    const before = await settledStats(driver, attachment);
    const blaster = startBlaster({ target: sb.host.hostAddr, port: DISCARD_PORT, durationMs: 400, tool: 'node' });
    // Meanwhile the namespace receives on another interface (lo): the IP layer counts those.
    await run('python3', ['-c', 'import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(3000): s.sendto(b"x",("127.0.0.1",9))'],
      { netns: sb.host.netns });
    await blaster.done;
    const after = await settledStats(driver, attachment);

    const runs = after.runCount - before.runCount;
    assert.ok(runs > 1000n, `drop-all ran (${runs})`);
    assert.equal(after.stackRxPackets! - before.stackRxPackets!, 0n, 'nothing got past drop-all on eth0');
    const snmp = await run('cat', ['/proc/net/snmp'], { netns: sb.host.netns });
    assert.ok(ipInReceives(snmp.stdout) >= 3000n, 'the namespace-wide counter would have hidden the drops');

    await driver.remove(attachment);
    assert.equal(existsSync(witness), false);
    const [net] = JSON.parse((await run('bpftool', ['-j', 'net', 'show'], { netns: sb.host.netns })).stdout) as Array<{ tc: unknown[] }>;
    assert.deepEqual(net?.tc ?? [], [], 'the witness left with the module');
  });

  it('remove() detaches and unpins; pins of other attachments stay', async (t) => {
    const sb = await sandbox(t);
    const driver = sb.driver();
    const xdp = sb.attachment('xdp');
    const tcx = sb.attachment('tcx-ingress');
    const a = await driver.install(xdp, modules.passV1(), null);
    const b = await driver.install(tcx, modules.tcxV1(), null);

    await driver.remove(xdp);

    assert.equal(await bpftoolXdpProgId(sb.host.netns, sb.host.iface), null);
    await assert.rejects(bpftoolLink(a.running.linkId));
    assert.equal((await bpftoolLink(b.running.linkId)).prog_id, b.running.progId);
    assert.deepEqual(await driver.observe(), [b.running]);
  });

  it('a link whose interface went away runs nothing, and a new install replaces it', async (t) => {
    const sb = await sandbox(t);
    const driver = sb.driver();
    const attachment: Attachment = { hook: 'xdp', iface: 'vx0' };
    const v1 = modules.passV1();
    const addVeth = () => run('ip', ['-n', sb.host.netns, 'link', 'add', 'vx0', 'up', 'type', 'veth', 'peer', 'name', 'vx1']);
    const delVeth = () => run('ip', ['-n', sb.host.netns, 'link', 'del', 'vx0']);
    await addVeth();
    const first = await driver.install(attachment, v1, null);

    await delVeth();
    assert.equal(await driver.stats(attachment), null, 'a defunct link runs nothing');
    await addVeth();

    const second = await driver.install(attachment, v1, null);
    assert.equal(second.changed, true);
    assert.notEqual(second.running.linkId, first.running.linkId);
    assert.deepEqual(await driver.observe(), [second.running]);

    await delVeth();
    assert.deepEqual(await driver.observe(), []);
    assert.deepEqual((await driver.check()).map((h) => h.status === 'broken' && h.reason), ['NO_INTERFACE'], 'kept for when vx0 returns');
    await driver.remove(attachment);
    assert.deepEqual(readdirSync(sb.pinRoot.path), [], 'remove() unpinned the defunct link');
  });

  it('netns: an unknown interface is NOT_FOUND, checked before loading', async (t) => {
    const sb = await sandbox(t);
    const driver = sb.driver();
    await assert.rejects(driver.install({ hook: 'xdp', iface: 'nosuch0' }, modules.passV1(), null), (err) => {
      assert.ok(err instanceof BpfleetError);
      assert.deepEqual([err.code, err.reason], ['NOT_FOUND', 'NO_INTERFACE']);
      return true;
    });
    assert.deepEqual(readdirSync(sb.pinRoot.path), []);
  });

  it('netns: runs work in the namespace on this thread only, and comes back', async (t) => {
    const sb = await sandbox(t);
    const home = readlinkSync('/proc/thread-self/ns/net');
    const ns = NetnsSwitch.open(sb.host.netns);
    t.after(() => ns.close());
    const inside = ns.run(() => readlinkSync('/proc/thread-self/ns/net'));
    assert.notEqual(inside, home);
    assert.equal(ns.run(() => bpf.ifNameToIndex(sb.host.iface)) > 0, true);
    assert.throws(() => ns.run(() => {
      throw new Error('boom');
    }), /boom/);
    assert.equal(readlinkSync('/proc/thread-self/ns/net'), home);
  });
});
