/**
 * Errors that help, through the real stack: a module the kernel's verifier refuses fails on
 * the canary, is rolled back, and its verifier log reaches `bpfleet rollout get`; and an
 * agent refuses every kind of bad module or stale intent it is sent over Apply with its own
 * reason, the running program untouched (read with bpftool).
 *
 * The bad modules are written into the artifact store and etcd directly, past the control
 * plane's checks: the agent must not rely on them.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Metadata } from '@grpc/grpc-js';
import { Objm } from '@nats-io/obj';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Etcd3 } from 'etcd3';
import { ArtifactStore } from '../common/artifacts.js';
import { digestOf } from '../common/digest.js';
import { fromServiceError, type BpfleetError } from '../common/errors.js';
import { ARTIFACT_BUCKET, keys } from '../common/keys.js';
import { codecs } from '../common/etcd/codec.js';
import { LocalFleet, REPO } from '../dev/fleet.js';
import { AgentServiceClient, type AttachmentState, type GetStateResponse, type Intent } from '../proto/gen/bpfleet/v1/agent.js';
import { HookKind, Module, type ModuleManifest } from '../proto/gen/bpfleet/v1/module.js';
import * as kernel from './support/bpftool.js';
import { prereqSkip } from './support/prereqs.js';

const skip = await prereqSkip(['root', 'bpf', 'bpffs', 'etcd', 'nats', 'netns', 'nsenter', 'clang']);

interface RolloutJson {
  id: string;
  status: { phase: string; hosts: { host: string; phase: string; message: string; detail?: string }[] };
}

const object = (path: string) => readFileSync(`${REPO}/agent/bpf/build/${path}`);

describe('errors that help: refused modules say why and change nothing', { skip }, () => {
  let fleet: LocalFleet;
  let etcd: Etcd3;
  let nc: NatsConnection;
  let artifacts: ArtifactStore;
  let agent: AgentServiceClient;
  let v1Digest = '';

  const xdp = (host: string) => kernel.hostXdpProgId(fleet, host);
  const cliJson = <T>(args: string[]) => fleet.cliJson<T>(args);
  const getState = () => new Promise<GetStateResponse>((resolve, reject) =>
    agent.getState({}, (err, res) => (err ? reject(err) : resolve(res))));
  const apply = (intent: Intent) => new Promise<BpfleetError | null>((resolve) =>
    agent.apply({ intent }, new Metadata(), { deadline: Date.now() + 30_000 }, (err) => resolve(err ? fromServiceError(err) : null)));

  /**
   * Files a module straight into etcd and its object into the store, where nothing but the
   * agent checks them. With `claimed`, the record names that digest and the object is filed
   * under it: the store hands back bytes that do not match.
   */
  const register = async (version: string, bytes: Uint8Array, programs: ModuleManifest['programs'], claimed?: string) => {
    let digest = digestOf(bytes);
    if (claimed) {
      await (await new Objm(nc).open(ARTIFACT_BUCKET)).putBlob({ name: ArtifactStore.objectKey(claimed) }, bytes);
      digest = claimed;
    } else {
      await artifacts.put(bytes);
    }
    const manifest: ModuleManifest = { name: 'pass-counter', version, description: '', programs, persistentMaps: [], counters: ['packets'] };
    const module: Module = {
      manifest, digest, size: bytes.length, objectKey: ArtifactStore.objectKey(digest),
      pushedAt: new Date().toISOString(), pushedBy: 'e2e', signature: Buffer.alloc(0), keyId: '',
    };
    await etcd.put(keys.module(manifest.name, version)).value(codecs.module.encode(module));
    return { name: manifest.name, version, digest };
  };

  before(async () => {
    fleet = await LocalFleet.start({ name: 'errs', hosts: 2, trafficPps: 500 });
    etcd = fleet.etcdClient();
    nc = await connect(fleet.natsOptions());
    artifacts = await ArtifactStore.open(nc);
    agent = new AgentServiceClient(fleet.host('h2').listen, fleet.credentials('control'));
    for (const m of ['pass-counter-v1.yaml', 'pass-counter-v2.yaml', 'testdata/verifier-reject.yaml']) {
      const r = await fleet.cli(['module', 'push', `agent/bpf/${m}`]);
      assert.equal(r.code, 0, r.stderr);
    }
    const r = await fleet.cli(['rollout', 'create', '-f', 'examples/rollout-v1.yaml', '--wait', '--timeout', '60s']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    v1Digest = digestOf(object('pass-counter-v1.bpf.o'));
  });

  after(async () => {
    agent?.close();
    await nc?.close();
    etcd?.close();
    await fleet?.stop();
  });

  test('a module the verifier rejects fails on the canary, is rolled back, and rollout get shows the verifier log', async () => {
    const before = new Map(await Promise.all(fleet.hosts.map(async (h) => [h.name, await xdp(h.name)] as const)));
    const spec = 'module: pass-counter\nversion: 4.0.0-verifier-reject\nattachment: xdp:eth0\nsteps: [{canary: 1}, {percent: 100}]\nonFailure: rollback\n';
    const r = await fleet.cli(['rollout', 'create', '-f', '-', '--wait', '--timeout', '60s'], { stdin: spec });
    assert.equal(r.code, 3, r.stdout + r.stderr);
    assert.match(r.stdout, /VERIFIER_REJECTED: load pass-counter@4\.0\.0-verifier-reject: verifier rejected pass_counter: R1 offset is outside of the packet/);
    assert.match(r.stdout, /^ +\| .*invalid access to packet/m, 'the --wait output must show the verifier log');

    const id = (await cliJson<{ rollouts: RolloutJson[] }>(['rollout', 'list'])).rollouts.at(-1)!.id;
    const rollout = await cliJson<RolloutJson>(['rollout', 'get', id]);
    assert.equal(rollout.status.phase, 'ROLLOUT_PHASE_ROLLED_BACK');
    const touched = rollout.status.hosts.filter((h) => h.phase !== 'HOST_PHASE_PENDING');
    assert.equal(touched.length, 1, 'only the canary may be touched');
    const canary = touched[0]!;
    assert.equal(canary.phase, 'HOST_PHASE_ROLLED_BACK');
    const log = canary.detail ?? '';
    assert.match(log, /invalid access to packet/, `rollout get -o json must carry the verifier log, got ${JSON.stringify(canary)}`);
    const lines = log.split('\n').length;
    assert.ok(lines > 1 && lines <= 30, `the log is trimmed to its useful tail: ${lines} lines`);
    const text = await fleet.cli(['rollout', 'get', id]);
    assert.match(text.stdout, /^ +\| .*invalid access to packet/m, 'rollout get must print the verifier log');

    for (const h of fleet.hosts) assert.equal(await xdp(h.name), before.get(h.name), `${h.name}: the previous program must still run`);
  });

  test('Apply refuses bad modules and stale intents, each with its own reason, the running program untouched', async () => {
    const v1 = object('pass-counter-v1.bpf.o');
    const xdpProg = [{ name: 'pass_counter', hook: HookKind.HOOK_KIND_XDP }];
    const modules = {
      garbage: await register('5.0.0-garbage', Buffer.from('this is not an object file\n'), xdpProg),
      hostElf: await register('5.0.0-host-elf', readFileSync(process.execPath).subarray(0, 64 * 1024), xdpProg),
      noProgram: await register('5.0.0-no-program', object('testdata/tcx-counter-v2.bpf.o'), [{ name: 'firewall', hook: HookKind.HOOK_KIND_XDP }]),
      tcxOnly: await register('5.0.0-tcx-only', object('testdata/tcx-counter-v1.bpf.o'), [{ name: 'tcx_counter', hook: HookKind.HOOK_KIND_TCX_INGRESS }]),
      wrongBytes: await register('5.0.0-wrong-bytes', v1, xdpProg, digestOf(Buffer.from('an object that was never pushed'))),
      rejected: await register('5.0.0-verifier', object('testdata/verifier-reject.bpf.o'), xdpProg),
      good: await register('5.0.0-good', object('pass-counter-v2.bpf.o'), xdpProg),
    };

    const state = (await getState()).attachments.find((a) => a.attachment === 'xdp:eth0')!;
    assert.equal(state.module?.digest, v1Digest);
    const intent = (module: Intent['module'], over: Partial<Intent> = {}): Intent => ({
      host: 'h2', attachment: 'xdp:eth0', module, expectedDigest: v1Digest, rolloutId: 'errors-e2e',
      generation: state.generation + 1, leaderEpoch: state.leaderEpoch, ...over,
    });
    const cases: { label: string; intent: Intent; reason: string; message: RegExp; detail?: RegExp }[] = [
      { label: 'garbage bytes', intent: intent(modules.garbage), reason: 'NOT_ELF', message: /not an ELF object/ },
      { label: 'an ELF for another machine', intent: intent(modules.hostElf), reason: 'NOT_BPF_ELF', message: /ELF for machine \d+, not BPF/ },
      { label: 'an ELF without the program the manifest names', intent: intent(modules.noProgram), reason: 'NO_PROGRAM', message: /no program named firewall in the object \(has: tcx_counter\)/ },
      { label: 'a module with no program for the hook', intent: intent(modules.tcxOnly), reason: 'WRONG_HOOK', message: /needs exactly one program for hook xdp, found 0/ },
      { label: 'an object that does not match its digest', intent: intent(modules.wrongBytes), reason: 'DIGEST_MISMATCH', message: /digest mismatch/ },
      { label: 'an intent whose digest is not the registry\'s', intent: intent({ ...modules.good, digest: v1Digest }), reason: 'DIGEST_MISMATCH', message: /the registry has sha256:/ },
      { label: 'a program the verifier rejects', intent: intent(modules.rejected), reason: 'VERIFIER_REJECTED', message: /R1 offset is outside of the packet/, detail: /invalid access to packet/ },
      { label: 'a stale generation', intent: intent(modules.good, { generation: state.generation - 1 }), reason: 'STALE_GENERATION', message: new RegExp(`generation ${state.generation - 1} is older than ${state.generation}`) },
      { label: 'a stale leader epoch', intent: intent(modules.good, { generation: state.generation + 100, leaderEpoch: state.leaderEpoch - 1 }), reason: 'STALE_EPOCH', message: /already applied/ },
    ];

    const running = await xdp('h2');
    const link = (await kernel.linkOfProg(running))!.id;
    const reasons = new Set<string>();
    for (const c of cases) {
      const err = await apply(c.intent);
      assert.ok(err, `${c.label}: applied, but must be refused`);
      assert.equal(err.reason, c.reason, `${c.label}: ${err.message}`);
      assert.match(err.message, c.message, c.label);
      if (c.detail) assert.match(err.detail ?? '', c.detail, `${c.label}: the error must carry the verifier log`);
      assert.equal(await xdp('h2'), running, `${c.label}: the running program changed`);
      assert.equal((await kernel.linkOfProg(running))?.id, link, `${c.label}: the link changed`);
      const now: AttachmentState | undefined = (await getState()).attachments.find((a) => a.attachment === 'xdp:eth0');
      assert.deepEqual(now, state, `${c.label}: the agent's state changed`);
      reasons.add(c.reason);
    }
    assert.equal(reasons.size, cases.length - 1, 'every refusal but the two digest checks has a reason of its own');

    // The same agent still applies a good intent: the refusals left nothing half-done.
    assert.equal(await apply(intent(modules.good)), null);
    const swapped = await xdp('h2');
    assert.notEqual(swapped, running);
    // On the same link. h2 now lags behind the version the fleet's last rollout promoted, so
    // the leader's converger may swap it back at any moment: read the link of whatever runs.
    assert.equal((await kernel.linkOfProg(await xdp('h2')))?.id, link);
  });
});
