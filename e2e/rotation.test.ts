/**
 * Rotating the fleet CA and every certificate, the way docs/SECURITY.md ("Rotating the CA")
 * says, in the middle of a rollout, all real: etcd with TLS and auth, nats-server with
 * per-identity permissions, the control plane and two agents driving XDP programs in the
 * kernel, UDP traffic into every host.
 *
 * The operator's PKI directory (with ca.key) is a copy of the fleet's; the fleet's own
 * directory stands for the files installed on the machines (every daemon and the CLI read
 * them there). Each step of the document is done literally, with the `bpfleet pki` CLI:
 * rotate; install the new ca.crt everywhere and restart each server and daemon, one at a
 * time; install every new certificate and key and restart again; rotate --finish, install
 * ca.crt and restart again. The rollout was paused after its canary before the rotation,
 * is resumed with the new certificates, bakes (telemetry over NATS, judged) and completes.
 * A holder of only an old-CA certificate is then refused by the control plane, etcd and NATS.
 */
import assert from 'node:assert/strict';
import { copyFileSync, cpSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect } from '@nats-io/transport-node';
import { etcdClient, natsTls, type ClientTls } from '../common/store-clients.js';
import { makeTempDir, removeTempDir } from '../dev/claims.js';
import { LocalFleet } from '../dev/fleet.js';
import * as kernel from './support/bpftool.js';
import { prereqSkip } from './support/prereqs.js';

const skip = await prereqSkip(['root', 'bpf', 'bpffs', 'etcd', 'nats', 'netns', 'nsenter', 'clang']);

/** Canary, then held (so the rotation happens mid-rollout whatever it costs), then a judged bake, then everyone. */
const SPEC = `module: pass-counter
version: 2.0.0
attachment: xdp:eth0
selector: {role: edge}
steps:
  - canary: 1
  - pause: {}
  - bake: 3s
  - percent: 100
analysis:
  interval: 1s
  minSamples: 2
  inconclusiveLimit: 10
  metrics:
    - name: drop_rate
      max: 0.05
`;

interface RolloutJson {
  id: string;
  status: { phase: string; message: string; step: number; analyses: { verdict: string }[] };
}

describe('rotating the CA and every certificate during a rollout', { skip }, () => {
  let fleet: LocalFleet;
  let scratch = '';

  before(async () => {
    fleet = await LocalFleet.start({ name: 'rot', hosts: 2, trafficPps: 1000 });
    scratch = makeTempDir('rot-operator');
    for (const m of ['pass-counter-v1', 'pass-counter-v2']) await fleet.cliJson(['module', 'push', `agent/bpf/${m}.yaml`]);
    const r = await fleet.cli(['rollout', 'create', '-f', 'examples/rollout-v1.yaml', '--wait', '--timeout', '60s']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });

  after(async () => {
    await fleet?.stop();
    if (scratch) removeTempDir(scratch);
  });

  test('the documented rotation mid-rollout: the rollout completes, and old-CA certificates are refused afterwards', async (t) => {
    const t0 = Date.now();
    const mark = (what: string) => t.diagnostic(`${what} at ${Date.now() - t0} ms`);
    const installed = fleet.pki!.dir;
    const operator = join(scratch, 'pki');
    const old = join(scratch, 'old');
    cpSync(installed, operator, { recursive: true });
    cpSync(installed, old, { recursive: true });
    const pki = async (args: string[]) => {
      const r = await fleet.cli(['pki', ...args, '--dir', operator]);
      assert.equal(r.code, 0, `bpfleet pki ${args.join(' ')}: ${r.stdout}${r.stderr}`);
    };
    const install = (files: string[]) => {
      for (const f of files) copyFileSync(join(operator, f), join(installed, f));
    };
    /** Every server and daemon, one at a time: etcd, NATS, the control plane, each agent. */
    const restartEach = async () => {
      await fleet.etcd.restart();
      await fleet.nats.restart();
      await fleet.control.stop();
      await fleet.startControl();
      for (const h of fleet.hosts) {
        await h.agent.stop();
        await fleet.startAgent(h.name);
      }
    };
    const status = async (id: string) => fleet.cliJson<RolloutJson>(['rollout', 'get', id]);
    const cli = async (args: string[], expect: number, stdin?: string) => {
      const r = await fleet.cli(args, stdin === undefined ? {} : { stdin });
      assert.equal(r.code, expect, `bpfleet ${args.join(' ')} (exit ${r.code}): ${r.stdout}${r.stderr}`);
      return r;
    };
    const xdpBefore = new Map<string, number>();
    for (const h of fleet.hosts) xdpBefore.set(h.name, await kernel.hostXdpProgId(fleet, h.name));

    // The canary is on 2.0.0 and the rollout holds at its pause step (exit 6: paused).
    const created = await cli(['rollout', 'create', '-f', '-', '-o', 'json'], 0, SPEC);
    const id = (JSON.parse(created.stdout) as { id: string }).id;
    await cli(['rollout', 'get', id, '--watch', '--timeout', '40s'], 6);
    assert.equal((await status(id)).status.phase, 'ROLLOUT_PHASE_PAUSED');

    // 1. bpfleet pki rotate
    await pki(['rotate']);
    // 2. the new ca.crt (old and new CA) on every server and client; each restarted.
    install(['ca.crt']);
    await restartEach();
    mark('bundle installed');
    // 3. each holder's new certificate and key, each restarted (servers too: etcd, NATS).
    install(readdirSync(operator).filter((f) => /\.(crt|key)$/.test(f) && f !== 'ca.crt' && f !== 'ca.key'));
    await restartEach();
    mark('certificates installed');
    // 4. bpfleet pki rotate --finish; the new ca.crt (new CA only) everywhere, each restarted.
    await pki(['rotate', '--finish']);
    install(['ca.crt']);
    await restartEach();
    mark('rotation finished');

    // The rollout goes on, on new certificates only: Apply (control plane to agent), the
    // module object (agent to NATS), telemetry (agent to NATS to the judged bake), etcd.
    await cli(['rollout', 'resume', id], 0);
    await cli(['rollout', 'get', id, '--watch', '--timeout', '45s'], 0);
    mark('rollout done');
    const done = await status(id);
    assert.equal(done.status.phase, 'ROLLOUT_PHASE_SUCCEEDED', done.status.message);
    assert.ok(done.status.analyses.some((a) => a.verdict === 'VERDICT_PASS'), 'the bake after the rotation was judged on telemetry');
    for (const h of fleet.hosts) {
      const id2 = await kernel.hostXdpProgId(fleet, h.name);
      assert.notEqual(id2, xdpBefore.get(h.name), `${h.name} runs 2.0.0`);
    }

    // Only-old-CA holders are refused everywhere: the control plane (the CLI, in the
    // handshake), etcd and NATS; the same calls with the new files get through.
    const oldAdmin = { BPFLEET_CA: join(installed, 'ca.crt'), BPFLEET_CERT: join(old, 'admin.crt'), BPFLEET_KEY: join(old, 'admin.key') };
    const refused = await fleet.cli(['hosts'], { env: oldAdmin });
    assert.notEqual(refused.code, 0, `an old-CA admin certificate was accepted: ${refused.stdout}`);
    assert.match(refused.stderr, /UNAVAILABLE|certificate|handshake/i);
    await cli(['hosts'], 0);
    const oldControl: ClientTls = { caPath: join(installed, 'ca.crt'), certPath: join(old, 'control.crt'), keyPath: join(old, 'control.key') };
    const etcd = etcdClient(fleet.etcdEndpoints.split(','), oldControl, { dialTimeout: 3_000, defaultCallOptions: () => ({ deadline: Date.now() + 3_000 }) });
    try {
      await assert.rejects(etcd.get('/bpfleet/rollouts/').string(), /UNAVAILABLE|certificate/i, 'etcd refuses an old-CA certificate');
    } finally {
      etcd.close();
    }
    const oldHost: ClientTls = { caPath: join(installed, 'ca.crt'), certPath: join(old, 'h1.crt'), keyPath: join(old, 'h1.key') };
    await assert.rejects(connect({ ...fleet.natsOptions('h1'), tls: natsTls(oldHost), reconnect: false, timeout: 3_000 }), /certificate|TLS|Authorization|ECONNRESET/i, 'NATS refuses an old-CA certificate');
    const nc = await connect({ ...fleet.natsOptions('h1'), reconnect: false, timeout: 3_000 });
    await nc.close();
  });
});
