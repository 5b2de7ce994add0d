/**
 * The control plane's API and the operator verbs end to end: a real etcd, a real
 * nats-server, the control plane and three agents as processes, driven through a real gRPC
 * client and the real `bpfleet` CLI. The agents run the sim dataplane: these tests are about
 * the API, the rollout controller and the CLI, not the kernel (e2e/rollout.test.ts is).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadPackageDefinition, type ChannelCredentials, Metadata, status, type Client, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { Etcd3 } from 'etcd3';
import { protoPath as HEALTH_PROTO } from 'grpc-health-check';
import { AgentServiceClient, type GetApplyHistoryResponse } from '../proto/gen/bpfleet/v1/agent.js';
import { ControlServiceClient } from '../proto/gen/bpfleet/v1/control.js';
import { RolloutPhase, type Rollout } from '../proto/gen/bpfleet/v1/rollout.js';
import { parseRolloutSpec } from '../control/rollout/spec.js';
import { LocalFleet, REPO } from '../dev/fleet.js';
import { prereqSkip } from './support/prereqs.js';

const skip = await prereqSkip(['root', 'etcd', 'nats', 'netns', 'clang']);

interface HostJson { host: string; wave: number; phase: string; previousVersion: string }
interface RolloutJson {
  id: string;
  undoOf?: string;
  spec: { version: string };
  status: { phase: string; step?: number; message: string; promoted?: boolean; observedRequest?: number; hosts: HostJson[]; analyses?: { step?: number; verdict: string }[] };
}
interface AuditJson { at: string; actor: string; action: string; target: string; detail?: Record<string, unknown> }

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(150);
  }
}

function unary<Res>(fn: (cb: (err: ServiceError | null, res: Res) => void) => unknown): Promise<Res> {
  return new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res))));
}

async function grpcError(p: Promise<unknown>): Promise<{ code: number; reason: string; details: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as ServiceError;
    return { code: e.code, reason: String(e.metadata?.get('bpfleet-reason')[0] ?? ''), details: e.details };
  }
  assert.fail('the call succeeded');
}

const require = createRequire(import.meta.url);
const REFLECTION_PROTO = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build/proto/grpc/reflection/v1/reflection.proto');

type Ctor = new (address: string, creds: ChannelCredentials) => Client & Record<string, (...args: unknown[]) => unknown>;

function genericClient(proto: string, includeDir: string, path: string[], address: string, creds: ChannelCredentials) {
  const pkg = loadPackageDefinition(loadSync(proto, { includeDirs: [includeDir], enums: String })) as Record<string, unknown>;
  const ctor = path.reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], pkg) as Ctor;
  return new ctor(address, creds);
}

/** What server reflection says: the services, and whether it can describe `symbol`. */
async function reflect(address: string, symbol: string, creds: ChannelCredentials): Promise<{ services: string[]; descriptor: string }> {
  const client = genericClient(REFLECTION_PROTO, dirname(REFLECTION_PROTO), ['grpc', 'reflection', 'v1', 'ServerReflection'], address, creds);
  try {
    const call = client.ServerReflectionInfo!() as NodeJS.ReadWriteStream & { end(): void; write(m: unknown): boolean };
    const answers: Record<string, unknown>[] = [];
    const done = new Promise<void>((resolve, reject) => {
      call.on('data', (m: Record<string, unknown>) => answers.push(m));
      call.on('end', () => resolve());
      call.on('error', reject);
    });
    call.write({ listServices: '' });
    call.write({ fileContainingSymbol: symbol });
    call.end();
    await done;
    const services = ((answers[0]!.listServicesResponse as { service: { name: string }[] }).service).map((s) => s.name).sort();
    const files = (answers[1]!.fileDescriptorResponse as { fileDescriptorProto: Buffer[] } | undefined)?.fileDescriptorProto ?? [];
    return { services, descriptor: Buffer.concat(files).toString('latin1') };
  } finally {
    client.close();
  }
}

async function health(address: string, service: string, creds: ChannelCredentials): Promise<string> {
  const client = genericClient(HEALTH_PROTO, dirname(dirname(dirname(HEALTH_PROTO))), ['grpc', 'health', 'v1', 'Health'], address, creds);
  try {
    const res = await unary<{ status: string }>((cb) => client.Check!({ service }, cb));
    return res.status;
  } finally {
    client.close();
  }
}

describe('control API and operator verbs (sim dataplane)', { skip }, () => {
  let fleet: LocalFleet;
  let etcd: Etcd3;
  let api: ControlServiceClient;
  const digests = new Map<string, string>();
  // The audit log names the caller's certificate identity (dev/pki.ts: one user per role);
  // a BPFLEET_ACTOR note changes nothing.
  const ADMIN = 'spiffe://bpfleet.dev/bpfleet/user/admin/admin';
  const actorEnv = { BPFLEET_ACTOR: 'alice@ci' };

  const cli = (args: string[], opts: { stdin?: string; env?: Record<string, string>; as?: 'admin' | 'publisher' } = {}) =>
    fleet.cli(args, { ...opts, env: { ...actorEnv, ...opts.env } });
  const cliJson = async <T>(args: string[]): Promise<T> => {
    const r = await cli([...args, '-o', 'json']);
    assert.equal(r.code, 0, `bpfleet ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  const getRollout = (id: string) => cliJson<RolloutJson>(['rollout', 'get', id]);
  const create = async (spec: string): Promise<string> => {
    const r = await cli(['rollout', 'create', '-f', '-', '-o', 'json'], { stdin: spec });
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as RolloutJson).id;
  };
  const snapshot = async () => etcd.getAll().prefix('/bpfleet/').strings();
  const history = async (host: string): Promise<GetApplyHistoryResponse> => {
    const agent = new AgentServiceClient(fleet.host(host).listen, fleet.credentials('viewer'));
    try {
      return await unary<GetApplyHistoryResponse>((cb) => agent.getApplyHistory({}, cb));
    } finally {
      agent.close();
    }
  };
  const audit = async (target: string): Promise<AuditJson[]> =>
    Object.values(await etcd.getAll().prefix('/bpfleet/audit/').strings()).map((v) => JSON.parse(v) as AuditJson).filter((e) => e.target === target);

  before(async () => {
    fleet = await LocalFleet.start({ name: 'api', hosts: 3, driver: 'sim', trafficPps: 0, telemetryIntervalMs: 250 });
    etcd = fleet.etcdClient();
    api = new ControlServiceClient(fleet.controlAddress, fleet.credentials('admin'));
    for (const m of ['pass-counter-v1', 'pass-counter-v2', 'drop-all']) {
      const pushed = await cliJson<{ module: { manifest: { version: string }; digest: string } }>(['module', 'push', `agent/bpf/${m}.yaml`]);
      digests.set(pushed.module.manifest.version, pushed.module.digest);
    }
    const r = await cli(['rollout', 'create', '-f', 'examples/rollout-v1.yaml', '--wait', '--timeout', '60s']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });

  after(async () => {
    api?.close();
    etcd?.close();
    await fleet?.stop();
  });

  test('server reflection and the standard health service, on the control plane and on an agent', async () => {
    const control = await reflect(fleet.controlAddress, 'bpfleet.v1.ControlService', fleet.credentials('viewer'));
    assert.deepEqual(control.services, ['bpfleet.v1.ControlService', 'grpc.health.v1.Health']);
    for (const rpc of ['PauseRollout', 'UndoRollout', 'WatchRollout', 'GetRolloutHistory']) assert.ok(control.descriptor.includes(rpc), `reflection does not describe ${rpc}`);
    const agent = await reflect(fleet.host('h1').listen, 'bpfleet.v1.AgentService', fleet.credentials('viewer'));
    assert.deepEqual(agent.services, ['bpfleet.v1.AgentService', 'grpc.health.v1.Health']);
    assert.ok(agent.descriptor.includes('GetApplyHistory'));

    assert.equal(await health(fleet.controlAddress, '', fleet.credentials('viewer')), 'SERVING');
    assert.equal(await health(fleet.controlAddress, 'bpfleet.v1.ControlService', fleet.credentials('viewer')), 'SERVING');
    assert.equal(await health(fleet.host('h1').listen, 'bpfleet.v1.AgentService', fleet.credentials('viewer')), 'SERVING');
    const unknown = await grpcError(health(fleet.controlAddress, 'no.such.Service', fleet.credentials('viewer')));
    assert.equal(unknown.code, status.NOT_FOUND);
  });

  test('bad requests get the right status code and a stable reason, and change nothing', async () => {
    const before = await snapshot();
    const md = new Metadata();
    const cases: [string, () => Promise<unknown>, number, string][] = [
      ['GetRollout without an id', () => unary((cb) => api.getRollout({ id: '' }, md, cb)), status.INVALID_ARGUMENT, 'MISSING_ID'],
      ['GetRollout of an unknown id', () => unary((cb) => api.getRollout({ id: 'nope' }, md, cb)), status.NOT_FOUND, 'ROLLOUT_NOT_FOUND'],
      ['CreateRollout without a spec', () => unary((cb) => api.createRollout({ spec: undefined }, md, cb)), status.INVALID_ARGUMENT, 'INVALID_SPEC'],
      ['CreateRollout of an unknown module', () => unary((cb) => api.createRollout({ spec: parseRolloutSpec('module: nope\nversion: 1.0.0\nattachment: xdp:eth0\nsteps: [{percent: 100}]\n') }, md, cb)), status.NOT_FOUND, 'MODULE_NOT_FOUND'],
      ['PauseRollout of an unknown id', () => unary((cb) => api.pauseRollout({ id: 'nope', reason: '' }, md, cb)), status.NOT_FOUND, 'ROLLOUT_NOT_FOUND'],
      ['AbortRollout without an id', () => unary((cb) => api.abortRollout({ id: '', reason: '' }, md, cb)), status.INVALID_ARGUMENT, 'MISSING_ID'],
      ['UndoRollout of an unknown id', () => unary((cb) => api.undoRollout({ id: 'nope', reason: '' }, md, cb)), status.NOT_FOUND, 'ROLLOUT_NOT_FOUND'],
      ['GetRolloutHistory of an unknown module', () => unary((cb) => api.getRolloutHistory({ module: 'nope' }, md, cb)), status.NOT_FOUND, 'MODULE_NOT_FOUND'],
      ['GetRolloutHosts of an unknown id', () => unary((cb) => api.getRolloutHosts({ id: 'nope', pageSize: 0, pageToken: '', phases: [] }, md, cb)), status.NOT_FOUND, 'ROLLOUT_NOT_FOUND'],
      ['GetRolloutHosts with a forged page token', () => unary((cb) => api.getRolloutHosts({ id: 'nope', pageSize: 0, pageToken: 'bm90IGEgdG9rZW4', phases: [] }, md, cb)), status.INVALID_ARGUMENT, 'BAD_PAGE_TOKEN'],
      ['GetRolloutHosts with a page too large', () => unary((cb) => api.getRolloutHosts({ id: 'nope', pageSize: 1_000_000, pageToken: '', phases: [] }, md, cb)), status.INVALID_ARGUMENT, 'BAD_PAGE_SIZE'],
    ];
    for (const [what, call, code, reason] of cases) {
      const e = await grpcError(call());
      assert.deepEqual([e.code, e.reason], [code, reason], `${what}: ${e.details}`);
    }
    const watch = api.watchRollout({ id: 'nope' }, md);
    const e = await new Promise<ServiceError>((resolve) => {
      watch.on('error', resolve);
      watch.on('data', () => undefined);
    });
    assert.equal(e.code, status.NOT_FOUND);
    assert.deepEqual(await snapshot(), before);
  });

  test('WatchRollout sends the rollout as it changes and ends at its final phase', async () => {
    // No host matches the selector: the controller fails the rollout while planning.
    const spec = parseRolloutSpec('module: pass-counter\nversion: 2.0.0\nattachment: xdp:eth0\nselector: {role: nobody}\nsteps: [{percent: 100}]\n');
    const created = await unary<Rollout>((cb) => api.createRollout({ spec }, new Metadata(), cb));
    const stream: ClientReadableStream<Rollout> = api.watchRollout({ id: created.id }, new Metadata());
    const seen: Rollout[] = [];
    const how = await new Promise<string>((resolve, reject) => {
      stream.on('data', (r: Rollout) => seen.push(r));
      stream.on('end', () => resolve('end'));
      stream.on('error', reject);
      setTimeout(() => resolve('timeout'), 20_000).unref();
    });
    assert.equal(how, 'end', 'the server must end the stream itself');
    assert.equal(seen.at(-1)!.status!.phase, RolloutPhase.ROLLOUT_PHASE_FAILED);
    assert.match(seen.at(-1)!.status!.message, /no registered host matches the selector/);
    assert.equal(seen.filter((r) => r.status!.phase === RolloutPhase.ROLLOUT_PHASE_FAILED).length, 1, 'nothing after the final phase');
  });

  test('a second rollout of the same module and attachment is refused, not queued; abort before any host frees the slot', async () => {
    const waiting = 'module: pass-counter\nversion: 2.0.0\nattachment: xdp:eth0\nsteps: [{pause: {}}, {percent: 100}]\n';
    const first = await create(waiting);
    await eventually('the first rollout to pause', async () => ((await getRollout(first)).status.phase === 'ROLLOUT_PHASE_PAUSED' ? true : undefined));
    const before = await snapshot();
    const second = await cli(['rollout', 'create', '-f', '-'], { stdin: waiting });
    assert.equal(second.code, 2, second.stderr);
    assert.match(second.stderr, new RegExp(`rollout ${first} is still active for pass-counter on xdp:eth0`));
    assert.deepEqual(await snapshot(), before, 'a refused rollout leaves nothing behind to run later');

    const abort = await cli(['rollout', 'abort', first, '--reason', 'test cleanup']);
    assert.equal(abort.code, 0, abort.stderr);
    const status = await cli(['rollout', 'status', first, '--timeout', '20s']);
    assert.equal(status.code, 4, `aborted is exit 4: ${status.stdout}${status.stderr}`);
    const r = await getRollout(first);
    assert.equal(r.status.phase, 'ROLLOUT_PHASE_ABORTED');
    assert.ok(r.status.hosts.every((h) => h.phase === 'HOST_PHASE_PENDING'), 'no host was touched');
  });

  let upgrade = '';
  test('pause, resume and promote through the CLI: each acted on, each audited with who, what and when', async () => {
    const spec = 'module: pass-counter\nversion: 2.0.0\nattachment: xdp:eth0\nsteps: [{canary: 1}, {bake: 10m}, {percent: 100}]\nanalysis: {interval: 500ms, minSamples: 2}\n';
    upgrade = await create(spec);
    await eventually('the canary to be updated and the bake to start', async () => ((await getRollout(upgrade)).status.step === 1 ? true : undefined));

    const pause = await cli(['rollout', 'pause', upgrade, '--reason', 'checking dashboards']);
    assert.equal(pause.code, 0, pause.stderr);
    assert.match(pause.stdout, new RegExp(`paused .*paused by ${ADMIN} \\(checking dashboards\\)`));
    const again = await cli(['rollout', 'pause', upgrade]);
    assert.equal(again.code, 0, 'pausing a paused rollout is not an error');
    assert.match(again.stdout, /nothing to pause/);
    const status = await cli(['rollout', 'status', upgrade, '--timeout', '10s']);
    assert.equal(status.code, 6, `paused is exit 6: ${status.stdout}${status.stderr}`);

    const resume = await cli(['rollout', 'resume', upgrade], { as: 'publisher', env: { BPFLEET_ACTOR: 'bob@ci' } });
    assert.match(resume.stderr, /ResumeRollout needs role operator \(or admin\)/, 'a publisher may not resume');
    assert.equal(resume.code, 1);
    const resumed = await cli(['rollout', 'resume', upgrade], { env: { BPFLEET_ACTOR: 'bob@ci' } });
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.equal((await getRollout(upgrade)).status.phase, 'ROLLOUT_PHASE_PROGRESSING');
    const notPaused = await cli(['rollout', 'resume', upgrade]);
    assert.equal(notPaused.code, 2);
    assert.match(notPaused.stderr, /cannot resume: rollout .* is not paused \(progressing\)/);

    const promote = await cli(['rollout', 'promote', upgrade, '--reason', 'verified by hand']);
    assert.equal(promote.code, 0, promote.stderr);
    const done = await cli(['rollout', 'status', upgrade, '--timeout', '60s']);
    assert.equal(done.code, 0, done.stdout + done.stderr);
    assert.match(done.stdout, /succeeded; 3\/3 updated/);
    const r = await getRollout(upgrade);
    assert.equal(r.status.promoted, true);
    assert.deepEqual(r.status.analyses ?? [], [], 'the 10 minute bake was skipped, not waited out');

    const late = await cli(['rollout', 'pause', upgrade]);
    assert.equal(late.code, 2);
    assert.match(late.stderr, /cannot pause: rollout .* already ended \(succeeded\)/);

    const entries = await audit(upgrade);
    const verbs = entries.filter((e) => e.action !== 'rollout.transition').map((e) => [e.action, e.actor, e.detail?.reason ?? '']);
    assert.deepEqual(verbs, [
      ['rollout.create', ADMIN, ''],
      ['rollout.pause', ADMIN, 'checking dashboards'],
      ['rollout.resume', ADMIN, ''],
      ['rollout.promote', ADMIN, 'verified by hand'],
    ]);
    for (const e of entries) assert.ok(!Number.isNaN(Date.parse(e.at)), 'every entry says when');
    assert.ok(entries.some((e) => e.action === 'rollout.transition' && JSON.stringify(e.detail).includes(`promoted by ${ADMIN}`)), 'the controller recorded acting on it');

    for (const h of fleet.hosts) {
      const records = (await history(h.name)).records.filter((x) => x.rolloutId === upgrade);
      assert.deepEqual(records.map((x) => x.digest), [digests.get('2.0.0')], `${h.name} changed exactly once`);
    }
  });

  test('abort mid-rollout swaps every updated host back, then ends ABORTED (exit 4)', async () => {
    const spec = 'module: pass-counter\nversion: 3.0.0-bad\nattachment: xdp:eth0\nmaxUnavailable: 2\nsteps: [{canary: 2}, {pause: {}}, {percent: 100}]\n';
    const id = await create(spec);
    const paused = await eventually('two canaries, then the pause', async () => {
      const r = await getRollout(id);
      return r.status.phase === 'ROLLOUT_PHASE_PAUSED' ? r : undefined;
    });
    const canaries = paused.status.hosts.filter((h) => h.phase === 'HOST_PHASE_UPDATED').map((h) => h.host).sort();
    assert.equal(canaries.length, 2);

    const abort = await cli(['rollout', 'abort', id, '--reason', 'wrong build', '-o', 'json']);
    assert.equal(abort.code, 0, abort.stderr);
    assert.equal((JSON.parse(abort.stdout) as { request: { verb: string } }).request.verb, 'ROLLOUT_VERB_ABORT');
    const status = await cli(['rollout', 'status', id, '--timeout', '30s']);
    assert.equal(status.code, 4, status.stdout + status.stderr);
    const r = await getRollout(id);
    assert.equal(r.status.phase, 'ROLLOUT_PHASE_ABORTED');
    assert.equal(r.status.message, `aborted by ${ADMIN} (wrong build)`);
    assert.deepEqual(r.status.hosts.filter((h) => h.phase === 'HOST_PHASE_ROLLED_BACK').map((h) => h.host).sort(), canaries);
    const rolledBack = await cliJson<{ hosts: { host: string }[] }>(['rollout', 'hosts', id, '--phase', 'rolled-back']);
    assert.deepEqual(rolledBack.hosts.map((h) => h.host).sort(), canaries, '`rollout hosts --phase` pages the same hosts from the server');

    const hosts = await cliJson<{ hosts: { name: string; attachments: { version: string }[] }[] }>(['hosts']);
    for (const h of hosts.hosts) assert.equal(h.attachments[0]?.version, '2.0.0', `${h.name} runs 2.0.0 again`);
    for (const h of fleet.hosts) {
      const records = (await history(h.name)).records.filter((x) => x.rolloutId === id).map((x) => x.digest);
      assert.deepEqual(records, canaries.includes(h.name) ? [digests.get('3.0.0-bad'), digests.get('2.0.0')] : [], `${h.name}: out and back once, or untouched`);
    }
  });

  test('undo of a succeeded rollout rolls the same hosts back to the version it replaced, canaried the same way', async () => {
    const undo = await cli(['rollout', 'undo', upgrade, '--reason', 'customer report', '-o', 'json']);
    assert.equal(undo.code, 0, undo.stderr);
    const created = JSON.parse(undo.stdout) as RolloutJson;
    assert.equal(created.undoOf, upgrade);
    assert.equal(created.spec.version, '1.0.0');
    // It copies the 10 minute bake too: promote it through, which also proves promote on it.
    await eventually('the undo canary', async () => ((await getRollout(created.id)).status.step === 1 ? true : undefined));
    assert.equal((await cli(['rollout', 'promote', created.id])).code, 0);
    const status = await cli(['rollout', 'status', created.id, '--timeout', '60s']);
    assert.equal(status.code, 0, status.stdout + status.stderr);
    const hosts = await cliJson<{ hosts: { attachments: { version: string }[] }[] }>(['hosts']);
    assert.deepEqual(hosts.hosts.map((h) => h.attachments[0]?.version), ['1.0.0', '1.0.0', '1.0.0']);

    const twice = await cli(['rollout', 'undo', upgrade]);
    assert.equal(twice.code, 2);
    assert.match(twice.stderr, new RegExp(`rollout ${created.id} \\(pass-counter@1\\.0\\.0\\) changed xdp:eth0 after ${upgrade}; undo that one instead`));
    const running = await cli(['rollout', 'undo', 'nope']);
    assert.equal(running.code, 7);
  });

  test('history joins rollouts and the audit log: versions, outcome, who did what', async () => {
    const res = await cliJson<{ entries: { id: string; fromVersions?: string[]; version: string; phase: string; undoOf?: string; finishedAt?: string; events?: { action: string; actor: string; detail?: string }[] }[] }>(['rollout', 'history', '--module', 'pass-counter']);
    const byId = new Map(res.entries.map((e) => [e.id, e]));
    const up = byId.get(upgrade)!;
    assert.deepEqual(up.fromVersions, ['1.0.0']);
    assert.equal(up.phase, 'ROLLOUT_PHASE_SUCCEEDED');
    assert.ok(up.finishedAt);
    assert.deepEqual(up.events!.map((e) => e.action), ['rollout.create', 'rollout.pause', 'rollout.resume', 'rollout.promote', 'rollout.undo']);
    const back = res.entries.at(-1)!;
    assert.equal(back.undoOf, upgrade);
    assert.deepEqual([back.version, back.fromVersions], ['1.0.0', ['2.0.0']]);

    const text = await cli(['rollout', 'history', '--module', 'pass-counter']);
    assert.equal(text.code, 0);
    assert.match(text.stdout, new RegExp(`${upgrade}  pass-counter 1\\.0\\.0 → 2\\.0\\.0 on xdp:eth0  SUCCEEDED`));
    assert.match(text.stdout, new RegExp(`pause by ${ADMIN} {2}seq=\\d+ reason=checking dashboards`));
    assert.match(text.stdout, /ABORTED/);
    const yaml = await cli(['rollout', 'history', '-o', 'yaml']);
    assert.match(yaml.stdout, /^entries:\n {2}- id: /);
  });

  test('the waves are recorded in etcd before any host is touched', async () => {
    const from = Number((await etcd.get('/bpfleet/').exec()).header.revision) + 1;
    const events: { rev: number; key: string; value: string }[] = [];
    const watcher = await etcd.watch().prefix('/bpfleet/').startRevision(String(from)).create();
    watcher.on('put', (kv) => events.push({ rev: Number(kv.mod_revision), key: kv.key.toString(), value: kv.value.toString() }));
    try {
      const id = await create('module: pass-counter\nversion: 3.0.0-bad\nattachment: xdp:eth0\nsteps: [{canary: 1}, {percent: 100}]\n');
      const done = await cli(['rollout', 'status', id, '--timeout', '30s']);
      assert.equal(done.code, 0, done.stdout + done.stderr);
      const final = await getRollout(id);
      await eventually('the watch to catch up', async () => (events.some((e) => e.key.startsWith('/bpfleet/rollouts/') && e.value.includes('SUCCEEDED')) ? true : undefined));
      const intentRevs = events.filter((e) => e.key.startsWith('/bpfleet/intents/') && e.value.includes(id)).map((e) => e.rev);
      assert.equal(intentRevs.length, 3, 'one intent per host');
      const firstTouch = Math.min(...intentRevs);
      // What etcd held about each host's wave before the first intent: per-host keys or the record.
      const planned = new Map<string, number>();
      const ours = (key: string) => key === `/bpfleet/rollouts/${id}` || key.startsWith(`/bpfleet/rollout-hosts/${id}/`);
      for (const e of events.filter((x) => x.rev < firstTouch && ours(x.key))) {
        const v = JSON.parse(e.value) as { host?: string; wave?: number; status?: { hosts?: HostJson[] } };
        for (const h of v.status?.hosts ?? (v.host ? [v as HostJson] : [])) planned.set(h.host, h.wave ?? 0);
      }
      assert.deepEqual(Object.fromEntries(planned), Object.fromEntries(final.status.hosts.map((h) => [h.host, h.wave ?? 0])), 'every host with its wave, before any intent');
    } finally {
      await watcher.cancel();
    }
  });

  test('rollout get --watch draws a live view in place on a terminal, and exits with the outcome', async () => {
    // The bake outlasts the CLI's start (X.509 reader, TLS handshake) even on a loaded
    // machine, so the view sees the rollout move and redraws at least once.
    const id = await create('module: pass-counter\nversion: 2.0.0\nattachment: xdp:eth0\nsteps: [{canary: 1}, {bake: 8s}, {percent: 100}]\nanalysis: {interval: 300ms, minSamples: 2}\n');
    // `script` gives the CLI a pseudo-terminal, as a person's shell would.
    const cmd = `${process.execPath} ${join(REPO, 'bin/bpfleet.mjs')} rollout get ${id} --watch --timeout 60s`;
    const out = await new Promise<{ code: number; text: string }>((resolve, reject) => {
      const child = spawn('script', ['-qefc', cmd, '/dev/null'], { cwd: REPO, env: { ...process.env, ...fleet.clientEnv(), COLUMNS: '120' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.on('data', (d) => (text += d));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code: code ?? -1, text }));
    });
    assert.equal(out.code, 0, out.text);
    assert.match(out.text, /\x1b\[\d+F\x1b\[J/, 'redraws in place with ANSI cursor movement');
    assert.match(out.text, /waves\r?\n {2}step 1 {2}\[█+\] 1\/1 updated/);
    assert.match(out.text, /step 2 PASS\r?\n {4}drop_rate: canary \d/);
    assert.match(out.text, new RegExp(`rollout ${id} succeeded \\(exit 0\\)`));

    // Not a terminal: plain lines appended, no escape codes.
    const piped = await cli(['rollout', 'get', id, '--watch']);
    assert.equal(piped.code, 0);
    assert.doesNotMatch(piped.stdout, /\x1b\[/);
    assert.match(piped.stdout, /SUCCEEDED: all 3 hosts run pass-counter@2\.0\.0/);
  });

  test('with etcd gone the API answers UNAVAILABLE (try again), not INTERNAL', async () => {
    await fleet.etcd.kill();
    try {
      const e = await grpcError(unary((cb) => api.getRollout({ id: upgrade }, new Metadata(), cb)));
      assert.deepEqual([e.code, e.reason], [status.UNAVAILABLE, 'STORE_UNAVAILABLE'], e.details);
      const r = await cli(['rollout', 'get', upgrade]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /etcd is unreachable/);
    } finally {
      await fleet.etcd.restart();
    }
  });
});
