/**
 * Attacks on the two gRPC services of a real fleet (etcd, nats-server, control plane, an
 * agent driving the kernel), each its own test: who gets in, and what each identity may do.
 *
 * - no client certificate, one from an unknown CA, an expired one: the TLS handshake fails
 *   (UNAVAILABLE), so no handler runs and etcd is unchanged byte for byte;
 * - a viewer creating a rollout, an operator pushing a module, a host certificate driving
 *   the API: PERMISSION_DENIED naming the role needed, etcd unchanged byte for byte;
 * - an operator certificate calling the agent's Apply directly: refused, the program in the
 *   kernel (bpftool) and the pins unchanged;
 * - the daemons refuse to start without TLS unless told --insecure, an agent refuses a
 *   certificate naming another host, and the CLI says what it is missing.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { credentials, Metadata, status, type ChannelCredentials } from '@grpc/grpc-js';
import type { Etcd3 } from 'etcd3';
import { fromServiceError, type BpfleetError } from '../common/errors.js';
import { signLeaf } from '../control/pki/certificates.js';
import { initCa, issue, loadCa } from '../control/pki/pki.js';
import { LocalFleet, REPO } from '../dev/fleet.js';
import { makeTempDir, removeTempDir } from '../dev/claims.js';
import { AgentServiceClient, type Intent } from '../proto/gen/bpfleet/v1/agent.js';
import { ControlServiceClient, PushModuleRequest } from '../proto/gen/bpfleet/v1/control.js';
import { parseRolloutSpec } from '../control/rollout/spec.js';
import { simArtifact } from '../agent/dataplane/sim/artifacts.js';
import * as kernel from './support/bpftool.js';
import { prereqSkip } from './support/prereqs.js';

const run = promisify(execFile);
const skip = await prereqSkip(['root', 'bpf', 'bpffs', 'etcd', 'nats', 'netns', 'nsenter', 'clang']);
const HOUR = 3_600_000;
// A failed handshake is UNAVAILABLE; a plaintext client may instead wait out its deadline.
const REFUSED_CODES: string[] = ['UNAVAILABLE', 'UNAUTHENTICATED', 'DEADLINE_EXCEEDED'];
const text = (path: string) => readFileSync(path, 'utf8');

type Outcome = { ok: true } | { ok: false; err: BpfleetError };

function unary<Res>(fn: (cb: (err: unknown, res: Res) => void) => unknown): Promise<Outcome> {
  return new Promise((resolve) => fn((err) => resolve(err ? { ok: false, err: fromServiceError(err) } : { ok: true })));
}

function refused(o: Outcome, code: keyof typeof status, reason?: string, message?: RegExp): BpfleetError {
  assert.ok(!o.ok, 'the call must be refused');
  assert.equal(o.err.code, code, `${o.err.code}/${o.err.reason}: ${o.err.message}`);
  if (reason) assert.equal(o.err.reason, reason, o.err.message);
  if (message) assert.match(o.err.message, message);
  return o.err;
}

/** Every file below `dir` with its size and inode: pins replaced or removed show up here. */
function pinsOf(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else out[p.slice(dir.length)] = `${st.ino}`;
    }
  };
  walk(dir);
  return out;
}

describe('gRPC attacks: mTLS on both services, roles on the API, Apply only from the control plane', { skip }, () => {
  let fleet: LocalFleet;
  let etcd: Etcd3;
  let scratch = '';
  const snapshot = () => etcd.getAll().prefix('/bpfleet/').buffers().then((kv) => Object.fromEntries(Object.entries(kv).map(([k, v]) => [k, v.toString('base64')])));
  const control = (creds: ChannelCredentials) => new ControlServiceClient(fleet.controlAddress, creds);
  const pushRequest = () => {
    const a = simArtifact({ name: 'intruder', version: '6.6.6' });
    return PushModuleRequest.fromPartial({ manifest: a.manifest, object: Buffer.from(a.object), digest: a.digest });
  };
  const specText = 'module: pass-counter\nversion: 1.0.0\nattachment: xdp:eth0\nsteps: [{percent: 100}]\n';

  before(async () => {
    fleet = await LocalFleet.start({ name: 'sec', hosts: 1, driver: 'kernel', trafficPps: 0 });
    etcd = fleet.etcdClient();
    scratch = makeTempDir('sec-certs');
    for (const m of ['pass-counter-v1', 'pass-counter-v2']) await fleet.cliJson(['module', 'push', `agent/bpf/${m}.yaml`]);
    const r = await fleet.cli(['rollout', 'create', '-f', 'examples/rollout-v1.yaml', '--wait', '--timeout', '60s']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });

  after(async () => {
    etcd?.close();
    await fleet?.stop();
    if (scratch) removeTempDir(scratch);
  });

  /** Credentials for a client holding `cert`/`key`, trusting the fleet's CA. */
  const holding = (certPem: string, keyPem: string): ChannelCredentials =>
    credentials.createSsl(Buffer.from(text(fleet.pki!.caPath)), Buffer.from(keyPem), Buffer.from(certPem));

  test('no client certificate, an unknown CA, an expired certificate: refused in the handshake, etcd unchanged', async () => {
    const before = await snapshot();
    const ca = text(fleet.pki!.caPath);
    const otherDir = join(scratch, 'other-ca');
    await initCa(otherDir, { trustDomain: 'bpfleet.dev' });
    const stranger = await issue(otherDir, { kind: 'user', name: 'mallory', roles: ['admin'] });
    const { ca: fleetCa } = await loadCa(fleet.pki!.dir);
    const now = Date.now();
    const expired = await signLeaf(fleetCa, { kind: 'user', name: 'expired', roles: ['admin'] }, { notBefore: new Date(now - 3 * HOUR), notAfter: new Date(now - HOUR) });
    const attempts: [string, ChannelCredentials][] = [
      ['no client certificate', credentials.createSsl(Buffer.from(ca))],
      ['a certificate from an unknown CA (same trust domain, admin role)', credentials.createSsl(Buffer.from(ca), Buffer.from(text(stranger.keyPath)), Buffer.from(text(stranger.certPath)))],
      ['an expired certificate of the fleet CA', holding(expired.certPem, expired.keyPem)],
      ['no TLS at all', credentials.createInsecure()],
    ];
    for (const [what, creds] of attempts) {
      const api = control(creds);
      const agent = new AgentServiceClient(fleet.host('h1').listen, creds);
      try {
        const push = await unary((cb) => api.pushModule(pushRequest(), new Metadata(), { deadline: Date.now() + 5000 }, cb));
        assert.ok(!push.ok, `${what}: PushModule must fail`);
        assert.ok(REFUSED_CODES.includes(push.err.code), `${what}: ${push.err.code} ${push.err.message}`);
        const apply = await unary((cb) => agent.getState({}, new Metadata(), { deadline: Date.now() + 5000 }, cb));
        assert.ok(!apply.ok && REFUSED_CODES.includes(apply.err.code), `${what}: the agent must refuse too`);
      } finally {
        api.close();
        agent.close();
      }
    }
    assert.deepEqual(await snapshot(), before, 'nothing was written');
    assert.doesNotMatch(fleet.control.lines().join('\n'), /"rpc":"PushModule"/, 'no PushModule handler ran (not even to refuse)');
  });

  test('a viewer cannot create a rollout, an operator cannot push a module, a host cannot use the API: PERMISSION_DENIED, etcd unchanged', async () => {
    const before = await snapshot();
    const viewer = control(fleet.credentials('viewer'));
    const operator = control(fleet.credentials('operator'));
    const h = fleet.pki!.hosts.get('h1')!;
    const host = control(holding(text(h.certPath), text(h.keyPath)));
    try {
      refused(await unary((cb) => viewer.createRollout({ spec: parseRolloutSpec(specText) }, cb)), 'PERMISSION_DENIED', 'ROLE_REQUIRED', /CreateRollout needs role operator .*user\/viewer\/viewer has viewer/);
      refused(await unary((cb) => viewer.abortRollout({ id: 'x', reason: '' }, cb)), 'PERMISSION_DENIED', 'ROLE_REQUIRED', /needs role operator/);
      refused(await unary((cb) => operator.pushModule(pushRequest(), cb)), 'PERMISSION_DENIED', 'ROLE_REQUIRED', /PushModule needs role publisher .*has operator/);
      refused(await unary((cb) => host.createRollout({ spec: parseRolloutSpec(specText) }, cb)), 'PERMISSION_DENIED', 'ROLE_REQUIRED', /is a host/);
      refused(await unary((cb) => host.listRollouts({ module: '' }, cb)), 'PERMISSION_DENIED', 'ROLE_REQUIRED', /ListRollouts needs role viewer/);
      // What each may do still works.
      assert.ok((await unary((cb) => viewer.listRollouts({ module: '' }, cb))).ok, 'a viewer lists rollouts');
    } finally {
      viewer.close();
      operator.close();
      host.close();
    }
    // Through the real CLI too, with the role named.
    const denied = await fleet.cli(['module', 'push', 'agent/bpf/drop-all.yaml'], { as: 'operator' });
    assert.equal(denied.code, 1, denied.stderr);
    assert.match(denied.stderr, /PushModule needs role publisher \(or admin\)/);
    assert.deepEqual(await snapshot(), before, 'etcd is byte-for-byte what it was');
    assert.match(fleet.control.lines().join('\n'), /refused: CreateRollout needs role operator/, 'refusals are logged');
  });

  test('an operator certificate calling the agent\'s Apply directly is refused; the program and the pins are unchanged', async () => {
    const h1 = fleet.host('h1');
    const progBefore = await kernel.hostXdpProgId(fleet, 'h1');
    const pinsBefore = pinsOf(h1.pinRoot.path);
    const v2 = (await fleet.cliJson<{ modules: { manifest: { version: string }; digest: string }[] }>(['module', 'list'])).modules.find((m) => m.manifest.version === '2.0.0')!;
    const v1 = (await fleet.cliJson<{ modules: { manifest: { version: string }; digest: string }[] }>(['module', 'list'])).modules.find((m) => m.manifest.version === '1.0.0')!;
    const intent: Intent = {
      host: 'h1', attachment: 'xdp:eth0', module: { name: 'pass-counter', version: '2.0.0', digest: v2.digest },
      expectedDigest: v1.digest, rolloutId: 'attack', generation: 1_000_000, leaderEpoch: 1_000_000,
    };
    for (const who of ['operator', 'admin'] as const) {
      const agent = new AgentServiceClient(h1.listen, fleet.credentials(who));
      try {
        refused(await unary((cb) => agent.apply({ intent }, cb)), 'PERMISSION_DENIED', 'CONTROL_PLANE_ONLY', /Apply answers only the control plane's identity/);
        // Reading answers viewers (and admins), not an operator without viewer.
        assert.equal((await unary((cb) => agent.getState({}, cb))).ok, who === 'admin', `${who} reading the agent's state`);
      } finally {
        agent.close();
      }
    }
    // A host's own certificate is not the control plane's either.
    const h = fleet.pki!.hosts.get('h1')!;
    const self = new AgentServiceClient(h1.listen, holding(text(h.certPath), text(h.keyPath)));
    try {
      refused(await unary((cb) => self.apply({ intent }, cb)), 'PERMISSION_DENIED', 'CONTROL_PLANE_ONLY');
      refused(await unary((cb) => self.getState({}, cb)), 'PERMISSION_DENIED', 'ROLE_REQUIRED');
    } finally {
      self.close();
    }
    assert.equal(await kernel.hostXdpProgId(fleet, 'h1'), progBefore, 'the same program runs');
    assert.deepEqual(pinsOf(h1.pinRoot.path), pinsBefore, 'the same pins');
  });

  test('daemons refuse to start without TLS unless told --insecure; an agent refuses a certificate naming another host', async () => {
    const tsx = ['--import', 'tsx'];
    const noTls = await run(process.execPath, [...tsx, 'control/main.ts', '--listen', '127.0.0.1:0', '--etcd', fleet.etcd.endpoint, '--nats', fleet.nats.url], { cwd: REPO }).then(() => null, (e: { code: number; stderr: string }) => e);
    assert.ok(noTls, 'the control plane must not start without TLS or --insecure');
    assert.equal(noTls.code, 2);
    assert.match(noTls.stderr, /no TLS certificate given: pass --tls-ca .* or --insecure/);
    const h = fleet.pki!.hosts.get('h1')!;
    const wrongHost = await run(process.execPath, [...tsx, 'agent/main.ts', '--driver', 'sim', '--host', 'h2', '--etcd', fleet.etcd.endpoint, '--nats', fleet.nats.url,
      '--tls-ca', fleet.pki!.caPath, '--tls-cert', h.certPath, '--tls-key', h.keyPath], { cwd: REPO }).then(() => null, (e: { code: number; stderr: string }) => e);
    assert.ok(wrongHost, 'an agent must not start as h2 with h1\'s certificate');
    assert.match(wrongHost.stderr, /--host h2, but the certificate names spiffe:\/\/bpfleet\.dev\/bpfleet\/host\/h1/);
    const userAsDaemon = await run(process.execPath, [...tsx, 'control/main.ts', '--listen', '127.0.0.1:0', '--etcd', fleet.etcd.endpoint, '--nats', fleet.nats.url,
      '--tls-ca', fleet.pki!.caPath, '--tls-cert', fleet.pki!.users.admin.certPath, '--tls-key', fleet.pki!.users.admin.keyPath], { cwd: REPO }).then(() => null, (e: { code: number; stderr: string }) => e);
    assert.ok(userAsDaemon, 'the control plane must not run on a user certificate');
    assert.match(userAsDaemon.stderr, /not a control identity/);
  });

  test('the CLI says what it is missing, and warns on every insecure command', async () => {
    const config = join(scratch, 'config.yaml');
    writeFileSync(config, '');
    const env = { BPFLEET_CA: '', BPFLEET_CERT: '', BPFLEET_KEY: '', BPFLEET_INSECURE: '', BPFLEET_CONFIG: config };
    const missing = await fleet.cli(['hosts'], { env: { ...env, BPFLEET_CA: fleet.pki!.caPath } });
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, /missing --tls-cert \(or BPFLEET_CERT, or cert: in a context in .*config\.yaml\), --tls-key/);
    const insecure = await fleet.cli(['--insecure', 'hosts'], { env });
    assert.notEqual(insecure.code, 0, 'a TLS control plane does not answer a plaintext client');
    assert.match(insecure.stderr, /WARNING: INSECURE: TLS is off/);
    // A kubeconfig-like context works.
    const viewer = fleet.pki!.users.viewer;
    writeFileSync(config, `current-context: lab\ncontexts:\n  - name: lab\n    server: ${fleet.controlAddress}\n    ca: ${fleet.pki!.caPath}\n    cert: ${viewer.certPath}\n    key: ${viewer.keyPath}\n`);
    const viaConfig = await fleet.cli(['hosts', '-o', 'json'], { env: { ...env, BPFLEET_SERVER: '' } });
    assert.equal(viaConfig.code, 0, viaConfig.stderr);
    assert.equal((JSON.parse(viaConfig.stdout) as { hosts: unknown[] }).hosts.length, 1);
  });
});
