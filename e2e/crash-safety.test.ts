/**
 * An agent killed with SIGKILL at any point of a swap leaves the host running the old or
 * the new version, never none; a restarted agent adopts what runs and converges to the
 * intent without loading a second copy. All real: etcd, NATS, an agent process, XDP on a
 * veth in a namespace with UDP flowing; what runs is read with bpftool.
 *
 * The agent dies through its test hook (BPFLEET_CRASH_AT, agent/crash-hook.ts), which
 * SIGKILLs the process at the named point of its first swap. Intents are written to etcd as
 * the controller's leader would write them, so that nothing but the agent reacts to the
 * crash (the controller's own handling of a dead host is another test's business).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Etcd3 } from 'etcd3';
import { keys } from '../common/keys.js';
import { codecs } from '../common/etcd/codec.js';
import { GetStateResponse, Intent } from '../proto/gen/bpfleet/v1/agent.js';
import type { SwapPoint } from '../agent/crash-hook.js';
import * as kernel from './support/bpftool.js';
import { LocalFleet } from '../dev/fleet.js';
import { prereqSkip } from './support/prereqs.js';

const skip = await prereqSkip(['root', 'bpf', 'bpffs', 'etcd', 'nats', 'netns', 'nsenter', 'clang']);

const HOST = 'h1';
const ATTACHMENT = 'xdp:eth0';
const PROG = 'pass_counter';

/** Which version the kernel must run right after the crash, by the point of the swap. */
const POINTS: { point: SwapPoint; survivor: 'old' | 'new'; why: string }[] = [
  { point: 'before-load', survivor: 'old', why: 'nothing was loaded yet' },
  { point: 'after-load', survivor: 'old', why: 'the new program is loaded and pinned, but the link still holds the old one' },
  { point: 'after-swap', survivor: 'new', why: 'bpf_link_update is atomic and the link is pinned' },
  { point: 'before-report', survivor: 'new', why: 'the swap is complete; only etcd and the caller were not told' },
];

interface Version { version: string; digest: string }

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// Unref'd: a bound that was not needed must not hold the test process open.
const deadline = (ms: number) => new Promise<null>((r) => setTimeout(() => r(null), ms).unref());

async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

describe('crash safety: an agent killed at any point of a swap leaves old or new running, never none', { skip }, () => {
  let fleet: LocalFleet;
  let etcd: Etcd3;
  const versions: Record<'v1' | 'v2', Version> = { v1: { version: '1.0.0', digest: '' }, v2: { version: '2.0.0', digest: '' } };
  // Program tags are a hash of the instructions: the same for every load of one object.
  const tags = new Map<string, string>();
  let generation = 0;
  let linkId = 0;

  const netns = () => fleet.host(HOST).netns.netns;
  const attached = async () => {
    const id = await kernel.xdpProgId(netns(), 'eth0');
    assert.ok(id, 'no XDP program attached to eth0');
    return id;
  };
  const writeIntent = async (to: Version, expected: Version | null) => {
    generation += 1;
    const intent: Intent = {
      host: HOST, attachment: ATTACHMENT, module: { name: 'pass-counter', version: to.version, digest: to.digest },
      expectedDigest: expected?.digest ?? '', rolloutId: 'crash-test', generation, leaderEpoch: 1,
    };
    await etcd.put(keys.intent(HOST, ATTACHMENT)).value(codecs.intent.encode(intent));
  };
  const observed = async () => {
    const text = await etcd.get(keys.observed(HOST)).string();
    return text ? GetStateResponse.fromJSON(JSON.parse(text)).attachments.find((a) => a.attachment === ATTACHMENT) : undefined;
  };
  const converged = (to: Version) => eventually(`${HOST} to report ${to.version} at generation ${generation}`, async () => {
    const a = await observed();
    return a?.module?.digest === to.digest && a.generation === generation ? a : undefined;
  });
  const livePrograms = async (newerThan: number) =>
    (await kernel.progs()).filter((p) => p.name === PROG && p.id > newerThan).map((p) => p.id);

  before(async () => {
    fleet = await LocalFleet.start({ name: 'crash', hosts: 1, trafficPps: 1000 });
    etcd = fleet.etcdClient();
    for (const m of ['pass-counter-v1', 'pass-counter-v2']) {
      const r = await fleet.cli(['module', 'push', `agent/bpf/${m}.yaml`, '-o', 'json']);
      assert.equal(r.code, 0, r.stderr);
      const pushed = JSON.parse(r.stdout) as { module: { manifest: { version: string }; digest: string } };
      const v = Object.values(versions).find((x) => x.version === pushed.module.manifest.version)!;
      v.digest = pushed.module.digest;
    }
    await writeIntent(versions.v1, null);
    await converged(versions.v1);
    const id = await attached();
    tags.set(versions.v1.digest, (await kernel.prog(id)).tag);
    linkId = (await kernel.linkOfProg(id))!.id;
  });

  after(async () => {
    etcd?.close();
    await fleet?.stop();
  });

  let from = versions.v1;
  for (const { point, survivor, why } of POINTS) {
    test(`killed ${point}: the ${survivor} version keeps running (${why}); the restarted agent converges`, async () => {
      const to = from === versions.v1 ? versions.v2 : versions.v1;
      const h = fleet.host(HOST);
      const oldId = await attached();
      await h.agent.stop();
      const doomed = await fleet.startAgent(HOST, { env: { BPFLEET_CRASH_AT: point } });
      const watermark = Math.max(0, ...(await kernel.progs()).map((p) => p.id));

      await writeIntent(to, from);
      const exit = await Promise.race([doomed.exited, deadline(30_000)]);
      assert.ok(exit, `the agent did not die at ${point}: ${doomed.describe()}`);
      assert.equal(exit.signal, 'SIGKILL', doomed.describe());
      assert.ok(doomed.lines().some((l) => l.includes(`BPFLEET_CRASH_AT=${point}: test hook kills the agent now`)), `died elsewhere than ${point}: ${doomed.describe()}`);

      // With no agent at all: a program is attached, through the same pinned link, and traffic flows.
      const survived = await attached();
      assert.equal((await kernel.linkOfProg(survived))?.id, linkId, 'the program must hang off the same link: never detached');
      if (survivor === 'old') {
        assert.equal(survived, oldId, `killed ${point}: the old program must still run`);
      } else {
        assert.notEqual(survived, oldId, `killed ${point}: the new program must run`);
        assert.equal((await kernel.prog(survived)).tag, tags.get(to.digest), `killed ${point}: the program running is not ${to.version}`);
      }
      const rx = await kernel.ipInReceives(netns());
      await sleep(500);
      assert.ok((await kernel.ipInReceives(netns())) > rx + 100, `killed ${point}: traffic stopped flowing`);

      const agent = await fleet.startAgent(HOST);
      await agent.waitForLine(/adopted running program/, 10_000);
      await converged(to);
      const running = await attached();
      if (survivor === 'new') assert.equal(running, survived, 'the restarted agent must adopt the new program, not load it again');
      tags.set(to.digest, (await kernel.prog(running)).tag);
      assert.equal((await kernel.linkOfProg(running))?.id, linkId, 'convergence must swap on the same link');
      // Exactly one copy of the new version is alive: any copy the dead agent loaded and
      // pinned but never attached was collected (the kernel frees it once unpinned).
      await eventually('the dead agent\'s leftovers to be freed', async () => {
        const live = await livePrograms(watermark);
        return live.length === 1 && live[0] === running ? live : undefined;
      }, 10_000).catch(async (err) => {
        throw new Error(`${(err as Error).message}: live ${PROG} programs loaded since the swap began: ${(await livePrograms(watermark)).join(', ')}; attached ${running}`);
      });
      from = to;
    });
  }
});
