/**
 * High availability of the control plane, all real where it matters: a 3-member etcd
 * cluster, a real nats-server, two control-plane replicas and five agents as processes,
 * the real `bpfleet` CLI. The agents run the sim dataplane (with a 300 ms load, so a wave
 * takes long enough to be interrupted): these tests are about the controller surviving the
 * loss of its leader, of NATS and of an etcd member, and an upgrade of every replica, one
 * at a time, to a newly built package (issue 12); not about the kernel.
 *
 * "Applied exactly once" is read from each agent's own record of the applies that changed
 * its dataplane (AgentService.GetApplyHistory), not from the controller.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type ServiceError } from '@grpc/grpc-js';
import { buildInfo } from '../common/version.js';
import { LocalFleet, type CliResult } from '../dev/fleet.js';
import type { ManagedProcess } from '../dev/processes.js';
import { AgentServiceClient, type ApplyRecord, type GetApplyHistoryResponse } from '../proto/gen/bpfleet/v1/agent.js';
import { ControlServiceClient } from '../proto/gen/bpfleet/v1/control.js';
import { HostPhase, RolloutPhase, Verdict, type Rollout } from '../proto/gen/bpfleet/v1/rollout.js';
import { buildPackage } from './support/package.js';
import { prereqSkip } from './support/prereqs.js';

const skip = await prereqSkip(['root', 'etcd', 'nats', 'netns', 'clang']);

const LEADER_TTL_S = 3;
const HOSTS = 5;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function unary<Res>(fn: (cb: (err: ServiceError | null, res: Res) => void) => unknown): Promise<Res> {
  return new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res))));
}

async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

interface Replica { process: ManagedProcess; address: string }

describe('control plane HA (sim dataplane): leader loss, NATS loss, etcd member loss, rolling upgrade', { skip }, () => {
  let fleet: LocalFleet;
  const replicas: Replica[] = [];
  const digests = new Map<string, string>();

  const servers = () => replicas.map((r) => r.address).join(',');
  const cli = (args: string[], opts: { stdin?: string; server?: string } = {}): Promise<CliResult> =>
    fleet.cli(args, { stdin: opts.stdin, env: { BPFLEET_SERVER: opts.server ?? servers(), BPFLEET_ACTOR: 'ha-test' } });
  const create = async (spec: string): Promise<string> => {
    const r = await cli(['rollout', 'create', '-f', '-', '-o', 'json'], { stdin: spec });
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { id: string }).id;
  };
  const live = () => replicas.filter((r) => r.process.running);
  const leaderOf = (reps: Replica[]) => reps.find((r) => r.process.lines().some((l) => l.includes('leading: resuming unfinished rollouts')));
  /** The rollout as any live replica's API shows it. */
  const getRollout = async (id: string): Promise<Rollout> => {
    const api = new ControlServiceClient(live()[0]!.address, fleet.credentials('viewer'));
    try {
      return await unary<Rollout>((cb) => api.getRollout({ id }, cb));
    } finally {
      api.close();
    }
  };
  const appliesOf = async (rolloutId: string): Promise<Map<string, ApplyRecord[]>> => {
    const out = new Map<string, ApplyRecord[]>();
    for (const h of fleet.hosts) {
      const agent = new AgentServiceClient(h.listen, fleet.credentials('viewer'));
      try {
        const res = await unary<GetApplyHistoryResponse>((cb) => agent.getApplyHistory({}, cb));
        out.set(h.name, res.records.filter((r) => r.rolloutId === rolloutId));
      } finally {
        agent.close();
      }
    }
    return out;
  };
  const assertEachAppliedOnce = async (id: string, version: string) => {
    for (const [host, records] of await appliesOf(id)) {
      assert.deepEqual(records.map((r) => r.digest), [digests.get(version)], `${host}: applied ${records.length} times for ${id}, expected exactly once`);
    }
  };

  before(async () => {
    fleet = await LocalFleet.start({
      name: 'ha', hosts: HOSTS, driver: 'sim', trafficPps: 0, telemetryIntervalMs: 250, etcdMembers: 3,
      leaderTtlSeconds: LEADER_TTL_S, agentArgs: () => ['--sim-load-delay', '300'],
    });
    replicas.push({ process: fleet.control, address: fleet.controlAddress });
    await fleet.startControl();
    replicas.push({ process: fleet.control, address: fleet.controlAddress });
    for (const m of ['pass-counter-v1', 'pass-counter-v2']) {
      const r = await cli(['module', 'push', `agent/bpf/${m}.yaml`, '-o', 'json']);
      assert.equal(r.code, 0, r.stderr);
      const pushed = JSON.parse(r.stdout) as { module: { manifest: { version: string }; digest: string } };
      digests.set(pushed.module.manifest.version, pushed.module.digest);
    }
    const install = await cli(['rollout', 'create', '-f', '-', '--wait', '--timeout', '60s'], {
      stdin: 'module: pass-counter\nversion: 1.0.0\nattachment: xdp:eth0\nmaxUnavailable: 100%\nsteps: [{percent: 100}]\n',
    });
    assert.equal(install.code, 0, install.stdout + install.stderr);
  });

  after(async () => {
    await fleet?.stop();
  });

  test('SIGKILL of the leader mid-wave: a new leader within TTL + 1 s, no host applied twice or skipped, the CLI follows on', async (t) => {
    const leader = leaderOf(replicas);
    assert.ok(leader, 'one replica leads');
    const follower = replicas.find((r) => r !== leader)!;
    // One host at a time, 300 ms each: a wave of five takes seconds.
    const id = await create('module: pass-counter\nversion: 2.0.0\nattachment: xdp:eth0\nsteps: [{percent: 100}]\n');
    // Watching through the leader first: the CLI must move to the other replica by itself.
    const watching = cli(['rollout', 'status', id, '--timeout', '60s'], { server: `${leader.address},${follower.address}` });
    const midWave = await eventually('the wave to be under way', async () => {
      const r = await getRollout(id);
      const updated = r.status!.hosts.filter((h) => h.phase === HostPhase.HOST_PHASE_UPDATED).length;
      return updated >= 1 && updated <= HOSTS - 2 ? r : undefined;
    }, 30_000, 20);
    await leader.process.kill();
    const killedAt = Date.now();
    await follower.process.waitForLine(/leading: resuming unfinished rollouts/, (LEADER_TTL_S + 5) * 1000);
    const takeover = Date.now() - killedAt;
    t.diagnostic(`new leader ${takeover} ms after the SIGKILL (lease TTL ${LEADER_TTL_S} s)`);
    assert.ok(takeover <= (LEADER_TTL_S + 1) * 1000, `the new leader took over after ${takeover} ms (lease TTL ${LEADER_TTL_S} s)`);

    const status = await watching;
    assert.equal(status.code, 0, status.stdout + status.stderr);
    assert.match(status.stderr, /lost the watch .*following on/, 'the CLI noticed the replica go and moved on');
    const r = await getRollout(id);
    assert.equal(r.status!.phase, RolloutPhase.ROLLOUT_PHASE_SUCCEEDED);
    await assertEachAppliedOnce(id, '2.0.0');
    assert.ok(midWave.status!.hosts.some((h) => h.phase === HostPhase.HOST_PHASE_PENDING), 'the kill came before the wave was done');
  });

  test('NATS stopped mid-analysis: the rollout holds (inconclusive, hosts named), then continues once NATS is back', async () => {
    const id = await create(`module: pass-counter
version: 1.0.0
attachment: xdp:eth0
steps: [{canary: 1}, {bake: 1s}, {percent: 100}]
analysis: {interval: 500ms, minSamples: 2, inconclusiveLimit: 100, staleAfter: 1500ms}
`);
    await eventually('the canary, then the bake', async () => ((await getRollout(id)).status!.step === 1 ? true : undefined), 30_000, 20);
    await fleet.nats.kill('SIGTERM');
    const holding = await eventually('an analysis that names the silent hosts', async () => {
      const r = await getRollout(id);
      return r.status!.analyses.some((a) => a.staleHosts.length === HOSTS) ? r : undefined;
    });
    const silent = holding.status!.analyses.find((a) => a.staleHosts.length === HOSTS)!;
    assert.equal(silent.verdict, Verdict.VERDICT_INCONCLUSIVE);
    assert.match(silent.summary, /no recent telemetry \(limit 1\.5s\) from .*last report [\d.]+s ago/);
    assert.equal(holding.status!.phase, RolloutPhase.ROLLOUT_PHASE_PROGRESSING);
    assert.equal(holding.status!.step, 1, 'held at the bake step');
    const canary = holding.status!.hosts.find((h) => h.phase === HostPhase.HOST_PHASE_UPDATED)!.host;
    // Hold a little longer: nothing may move on without telemetry.
    await sleep(2000);
    const still = await getRollout(id);
    assert.equal(still.status!.step, 1);
    assert.ok(!still.status!.analyses.some((a) => a.verdict === Verdict.VERDICT_PASS), 'never a pass without evidence');
    for (const [host, records] of await appliesOf(id)) {
      assert.equal(records.length, host === canary ? 1 : 0, `${host}: only the canary may change while the analysis holds`);
    }

    await fleet.nats.restart();
    const status = await cli(['rollout', 'status', id, '--timeout', '60s']);
    assert.equal(status.code, 0, status.stdout + status.stderr);
    const done = await getRollout(id);
    const verdicts = done.status!.analyses.map((a) => a.verdict);
    assert.equal(verdicts.at(-1), Verdict.VERDICT_PASS);
    assert.ok(verdicts.indexOf(Verdict.VERDICT_PASS) > verdicts.indexOf(Verdict.VERDICT_INCONCLUSIVE), 'the pass came after the silence');
    await assertEachAppliedOnce(id, '1.0.0');
  });

  test('an etcd member killed (the etcd leader): the rollout carries on', async () => {
    const cluster = fleet.etcdCluster!;
    const isLeader = async (metricsUrl: string) => /^etcd_server_is_leader 1$/m.test(await (await fetch(`${metricsUrl}/metrics`)).text());
    const flags = await Promise.all(cluster.members.map((m) => isLeader(m.metricsUrl)));
    const victim = cluster.members[Math.max(0, flags.indexOf(true))]!;
    const id = await create(`module: pass-counter
version: 2.0.0
attachment: xdp:eth0
steps: [{canary: 1}, {bake: 1s}, {percent: 100}]
analysis: {interval: 500ms, minSamples: 2}
`);
    await eventually('the canary to start', async () => ((await getRollout(id)).status!.hosts.some((h) => h.phase !== HostPhase.HOST_PHASE_PENDING) ? true : undefined), 30_000, 20);
    await victim.kill();
    const status = await cli(['rollout', 'status', id, '--timeout', '90s']);
    assert.equal(status.code, 0, status.stdout + status.stderr);
    assert.equal(victim.running, false, 'the member stayed down for the whole rollout');
    await assertEachAppliedOnce(id, '2.0.0');
  });

  test('the control plane upgraded replica by replica mid-rollout: each replaced by a newly built package, the rollout completes', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'bpfleet-ha-upgrade-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const version = `${buildInfo().version}-upgrade.1`;
    await buildPackage(dir, version);
    // Held at a pause after the canary, so every replica is replaced mid-rollout.
    const id = await create('module: pass-counter\nversion: 1.0.0\nattachment: xdp:eth0\nsteps: [{canary: 1}, {pause: {}}, {percent: 100}]\n');
    await eventually('the canary, then the pause', async () => ((await getRollout(id)).status!.step === 1 ? true : undefined), 30_000, 20);
    // Two replicas of the current build (the first test killed one), then, as the Deployment's
    // rolling update does it (maxUnavailable 1, maxSurge 0): stop one, start its replacement,
    // wait until it serves, then the next; the API answers throughout.
    replicas.splice(0, replicas.length, ...live());
    while (replicas.length < 2) replicas.push({ process: await fleet.startControl(), address: fleet.controlAddress });
    for (const old of [...replicas]) {
      await old.process.stop();
      replicas.splice(replicas.indexOf(old), 1);
      assert.equal((await getRollout(id)).status!.step, 1, 'the remaining replica serves the rollout, still held');
      const process = await fleet.startControl({ root: dir });
      replicas.push({ process, address: fleet.controlAddress });
    }
    for (const r of replicas) assert.match(r.process.lines().find((l) => l.includes('control plane ready')) ?? '', new RegExp(`"version":"${version}"`));
    await eventually('a new replica to lead', async () => leaderOf(replicas), (LEADER_TTL_S + 5) * 1000);
    const resume = await cli(['rollout', 'resume', id]);
    assert.equal(resume.code, 0, resume.stdout + resume.stderr);
    const status = await cli(['rollout', 'status', id, '--timeout', '60s']);
    assert.equal(status.code, 0, status.stdout + status.stderr);
    assert.equal((await getRollout(id)).status!.phase, RolloutPhase.ROLLOUT_PHASE_SUCCEEDED);
    await assertEachAppliedOnce(id, '1.0.0');
  });
});
