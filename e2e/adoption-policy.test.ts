/**
 * Adoption after a restart is checked against the signature policy (issue 10, item 8), on
 * the real kernel, etcd and NATS: an agent without a policy installs an unsigned module;
 * restarted with --require-signatures it adopts the running program without reloading it,
 * reports it UNVERIFIED (UNSIGNED) and leaves it attached, refuses the intent naming it, and
 * swaps it for a signed version on the same link when an intent names one. Intents are
 * written to etcd as the leader would (as in e2e/crash-safety.test.ts).
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Etcd3 } from 'etcd3';
import { codecs } from '../common/etcd/codec.js';
import { keys } from '../common/keys.js';
import { LocalFleet, REPO } from '../dev/fleet.js';
import { CommandError, run } from '../dev/processes.js';
import { AttachmentStatus, GetStateResponse, type Intent } from '../proto/gen/bpfleet/v1/agent.js';
import * as kernel from './support/bpftool.js';
import { prereqSkip } from './support/prereqs.js';

const skip = await prereqSkip(['root', 'bpf', 'bpffs', 'etcd', 'nats', 'netns', 'nsenter', 'clang']);

const HOST = 'h1';
const ATTACHMENT = 'xdp:eth0';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

describe('adoption after a restart is checked against the signature policy', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'bpfleet-e2e-adopt-'));
  const trusted = join(dir, 'trusted');
  let fleet: LocalFleet;
  let etcd: Etcd3;
  let generation = 0;
  const digests = new Map<string, string>();

  const writeIntent = async (version: string, expected: string) => {
    generation += 1;
    const intent: Intent = {
      host: HOST, attachment: ATTACHMENT, module: { name: 'pass-counter', version, digest: digests.get(version)! },
      expectedDigest: expected ? digests.get(expected)! : '', rolloutId: 'adopt-test', generation, leaderEpoch: 1,
    };
    await etcd.put(keys.intent(HOST, ATTACHMENT)).value(codecs.intent.encode(intent));
  };
  const observed = async () => {
    const text = await etcd.get(keys.observed(HOST)).string();
    return text ? GetStateResponse.fromJSON(JSON.parse(text)).attachments.find((a) => a.attachment === ATTACHMENT) : undefined;
  };
  const attached = () => kernel.hostXdpProgId(fleet, HOST);

  before(async () => {
    const key = join(dir, 'release');
    try {
      await run(process.execPath, [join(REPO, 'bin/bpfleet.mjs'), 'keys', 'create', '--out', key]);
    } catch (err) {
      assert.fail(`keys create: ${(err as CommandError).stderr}`);
    }
    mkdirSync(trusted);
    copyFileSync(`${key}.public.pem`, join(trusted, 'release.public.pem'));
    // 2.0.0 signed by the trusted key, in its own directory so its .sig is its own.
    copyFileSync(join(REPO, 'agent/bpf/build/pass-counter-v2.bpf.o'), join(dir, 'v2.bpf.o'));
    const v2 = join(dir, 'v2.yaml');
    writeFileSync(v2, readFileSync(join(REPO, 'agent/bpf/pass-counter-v2.yaml'), 'utf8').replace(/^object: .*$/m, 'object: v2.bpf.o'));
    await run(process.execPath, [join(REPO, 'bin/bpfleet.mjs'), 'module', 'sign', v2, '--key', `${key}.private.pem`]);

    fleet = await LocalFleet.start({ name: 'adopt', hosts: 1, trafficPps: 0 });
    etcd = fleet.etcdClient();
    for (const manifest of [join(REPO, 'agent/bpf/pass-counter-v1.yaml'), v2]) {
      const pushed = await fleet.cliJson<{ module: { manifest: { version: string }; digest: string } }>(['module', 'push', manifest]);
      digests.set(pushed.module.manifest.version, pushed.module.digest);
    }
  });

  after(async () => {
    etcd?.close();
    await fleet?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('an unsigned program adopted under --require-signatures is UNVERIFIED, left running, not claimed, and replaced by a signed one', async () => {
    await writeIntent('1.0.0', '');
    await eventually('1.0.0 running', async () => ((await observed())?.generation === generation ? true : undefined));
    const unsigned = await attached();
    const link = (await kernel.linkOfProg(unsigned))!.id;

    const h = fleet.host(HOST);
    await h.agent.stop();
    const agent = await fleet.startAgent(HOST, { args: ['--require-signatures', '--trusted-keys', trusted] });
    await agent.waitForLine(/adopted running program fails the signature policy/, 10_000);
    const state = await eventually('the adopted program reported UNVERIFIED', async () => {
      const a = await observed();
      return a?.status === AttachmentStatus.ATTACHMENT_STATUS_UNVERIFIED ? a : undefined;
    });
    assert.equal(state.reason, 'UNSIGNED');
    assert.equal(state.module?.digest, digests.get('1.0.0'));
    assert.equal(state.progId, unsigned, 'adopted, not loaded again');
    assert.equal(await attached(), unsigned, 'left running');

    // The stored intent names 1.0.0: the restarted agent applies it, and the policy refuses it.
    await agent.waitForLine(/intent not applied: .*UNSIGNED/, 10_000);
    assert.equal((await observed())?.status, AttachmentStatus.ATTACHMENT_STATUS_UNVERIFIED, 'its own intent does not make it verified');
    const hosts = await fleet.cli(['hosts']);
    assert.match(hosts.stdout, new RegExp(`xdp:eth0=pass-counter@1\\.0\\.0\\(prog ${unsigned}, UNVERIFIED UNSIGNED\\)`));

    await writeIntent('2.0.0', '1.0.0');
    const swapped = await eventually('2.0.0 running', async () => {
      const a = await observed();
      return a?.module?.digest === digests.get('2.0.0') && a?.generation === generation ? a : undefined;
    });
    assert.equal(swapped.status, AttachmentStatus.ATTACHMENT_STATUS_RUNNING);
    assert.equal(swapped.reason, '');
    const signed = await attached();
    assert.notEqual(signed, unsigned);
    assert.equal((await kernel.linkOfProg(signed))?.id, link, 'swapped on the same link');
  });
});
