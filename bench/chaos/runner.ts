/**
 * The chaos run: a mixed fleet (chaos-fleet.ts), rollouts back to back through the real CLI
 * (good and bad versions; pause/resume, promote, abort, undo), faults from the seeded
 * schedule (schedule.ts, faults.ts), and the invariants (invariants.ts) checked all along
 * from outside the product (witness.ts). Returns, and optionally writes, the run's report.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Etcd3 } from 'etcd3';
import { REPO } from '../../dev/fleet.js';
import { BAD_VERSION, ChaosFleet, SIM_PREFIX } from './chaos-fleet.js';
import { INJECTORS } from './faults.js';
import { AttachmentWatch, EtcdSizeWatch, RssWatch, badVersionContained, duplicateApplies, mib, rolloutOverdue, type ApplyRecordLike, type Violation } from './invariants.js';
import { FAULT_KINDS, faultSchedule, rolloutPlan, type FaultKind, type PlannedRollout } from './schedule.js';
import { applyHistory, etcdDbBytes, hostsObservedOn, rssBytes, sampleAttachment, versionTags } from './witness.js';

export interface ChaosOptions {
  seed: number;
  /** How long faults are injected and rollouts started, ms (the fleet's start and the last rollout's end come on top). */
  durationMs: number;
  kernelHosts: number;
  simHosts: number;
  controlReplicas: number;
  meanFaultGapMs: number;
  /** Every rollout must be final this long after its creation, ms. */
  rolloutBoundMs: number;
  kinds?: readonly FaultKind[];
  /** Where to write the report (JSON); none by default. */
  resultsPath?: string;
  log?: (line: string) => void;
}

/** Stated ceilings: RSS per process kind, and etcd's database size. */
export const RSS_CEILING: Record<string, number> = { control: 512 << 20, agent: 256 << 20, 'sim-pool': 768 << 20, etcd: 512 << 20, nats: 256 << 20 };
export const ETCD_DB_CEILING = 128 << 20;
/** An agent re-checks its attachments every 2 s; a re-created interface must have its program back within this. */
export const REATTACH_GRACE_MS = 10_000;
const ATTACHMENT = 'xdp:eth0';
const GOOD_VERSIONS = ['1.0.0', '2.0.0'];
const MODULES = [['1.0.0', 'pass-counter-v1'], ['2.0.0', 'pass-counter-v2'], [BAD_VERSION, 'drop-all']] as const;
const FINAL = new Set(['ROLLOUT_PHASE_SUCCEEDED', 'ROLLOUT_PHASE_ROLLED_BACK', 'ROLLOUT_PHASE_FAILED', 'ROLLOUT_PHASE_ABORTED']);

export interface ChaosReport {
  seed: number;
  durationMs: number;
  fleet: { kernelHosts: number; simHosts: number; simDataplane: string; etcdMembers: number; natsNodes: number; controlReplicas: number };
  faults: Record<string, number>;
  faultErrors: string[];
  rollouts: { started: number; completed: number; byPhase: Record<string, number>; bad: number; scenarios: Record<string, number>; maxTimeToFinalMs: number; boundMs: number };
  violations: Violation[];
  peakRssBytes: Record<string, number>;
  rssCeilingBytes: Record<string, number>;
  etcdDbBytes: { peak: Record<string, number>; ceiling: number };
  applyRecordsChecked: number;
  /** What the witnesses saw, so a run whose witness saw nothing cannot pass unnoticed. */
  witness: { attachmentSamples: number; samplesByVersion: Record<string, number>; samplesWithoutInterface: number; maxHostsOnBadVersion: number };
  machine: { cpus: number; kernel: string };
}

interface RolloutJson { id: string; spec?: unknown; status: { phase: string; hosts?: { host: string; phase: string }[] } }

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function specFor(version: string): string {
  return `module: pass-counter
version: ${version}
attachment: ${ATTACHMENT}
selector: {role: edge}
maxUnavailable: 50%
steps: [{canary: 1}, {bake: 3s}, {percent: 100}]
analysis:
  interval: 1s
  minSamples: 2
  inconclusiveLimit: 10
  metrics: [{name: drop_rate, max: 0.05, maxIncrease: 0.02}]
onFailure: rollback
`;
}

export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const t0 = Date.now();
  const now = () => Date.now() - t0;
  const say = (l: string) => log(`[chaos +${(now() / 1000).toFixed(1)}s] ${l}`);
  const violations: Violation[] = [];
  const violate = (vs: Violation[]) => {
    for (const v of vs) say(`VIOLATION ${v.invariant}: ${v.detail}`);
    violations.push(...vs);
  };

  say(`seed ${o.seed}: starting ${o.kernelHosts} kernel hosts + ${o.simHosts} sim hosts, 3 etcd, 3 nats, ${o.controlReplicas} control replicas`);
  const chaos = await ChaosFleet.start({ name: `chaos${process.pid % 10000}`, kernelHosts: o.kernelHosts, simHosts: o.simHosts, controlReplicas: o.controlReplicas });
  const etcd: Etcd3 = chaos.fleet.etcdClient();
  const faults: Record<string, number> = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0]));
  const faultErrors: string[] = [];
  const byPhase: Record<string, number> = {};
  const scenarios: Record<string, number> = {};
  let started = 0;
  let completed = 0;
  let bad = 0;
  let maxTimeToFinal = 0;
  const rss = new RssWatch((p) => RSS_CEILING[p.replace(/-[^-]*$/, '')] ?? RSS_CEILING[p] ?? 512 << 20);
  const etcdSize = new EtcdSizeWatch(ETCD_DB_CEILING);
  const attachments = new AttachmentWatch(REATTACH_GRACE_MS);
  const applies = new Map<string, ApplyRecordLike>();
  const downIfaces = new Set<string>();
  const ctl = new AbortController();

  try {
    const digests = new Map<string, string>();
    for (const [version, file] of MODULES) {
      const pushed = await chaos.fleet.cliJson<{ module: { digest: string } }>(['module', 'push', `agent/bpf/${file}.yaml`]);
      digests.set(version, pushed.module.digest);
    }
    const tags = await versionTags(MODULES.map(([version, file]) => ({ version, objectPath: join(REPO, 'agent/bpf/build', `${file}.bpf.o`) })));
    const tagOf = new Map([...tags].map(([tag, v]) => [v, tag]));
    const intended = new Map<string, string>();
    const intend = (version: string) => intended.set(tagOf.get(version)!, version);

    // What every kernel host runs, what each process weighs, how big etcd is: once a second.
    const kernelHostsOnBad = new Set<string>();
    const seen = { attachmentSamples: 0, samplesByVersion: {} as Record<string, number>, samplesWithoutInterface: 0, maxHostsOnBadVersion: 0 };
    const sampler = (async () => {
      while (!ctl.signal.aborted) {
        const at = now();
        for (const h of chaos.fleet.hosts) {
          try {
            const s = await sampleAttachment(h.name, h.netns.netns, at);
            // While the run deletes the interface it may be half there: the fault excuses it.
            if (downIfaces.has(h.name)) s.ifacePresent = false;
            violate(attachments.check(s, intended));
            seen.attachmentSamples++;
            if (!s.ifacePresent) seen.samplesWithoutInterface++;
            const v = s.progTag ? (tags.get(s.progTag) ?? `tag ${s.progTag}`) : 'none';
            seen.samplesByVersion[v] = (seen.samplesByVersion[v] ?? 0) + 1;
            if (s.progTag && tags.get(s.progTag) === BAD_VERSION) kernelHostsOnBad.add(h.name);
            else kernelHostsOnBad.delete(h.name);
          } catch (err) {
            say(`sampler: ${h.name}: ${(err as Error).message.split('\n')[0]}`);
          }
        }
        for (const p of chaos.processes()) {
          const bytes = p.pid === undefined ? null : rssBytes(p.pid);
          if (bytes !== null) violate(rss.check(p.name, bytes, at));
        }
        for (const m of chaos.fleet.etcdCluster!.members) {
          const bytes = m.running ? await etcdDbBytes(m.metricsUrl) : null;
          if (bytes !== null) violate(etcdSize.check(m.name, bytes, at));
        }
        await sleep(1_000);
      }
    })();

    const collectApplies = async () => {
      const creds = chaos.fleet.credentials('viewer');
      const targets: { address: string; host?: string; run: string }[] = [
        ...chaos.fleet.hosts.filter((h) => h.agent.running).map((h) => ({ address: h.listen, run: `agent-${h.agent.pid}` })),
        ...(chaos.pool?.running ? Array.from({ length: o.simHosts }, (_, i) => ({ address: chaos.poolAddress, host: `${SIM_PREFIX}${i + 1}`, run: `pool-${chaos.pool.pid}` })) : []),
      ];
      for (let i = 0; i < targets.length; i += 50) {
        await Promise.all(targets.slice(i, i + 50).map(async (t) => {
          const res = await applyHistory(t.address, creds, t.host).catch(() => null);
          for (const r of res?.records ?? []) {
            const rec = { host: res!.host || t.host || '', attachment: r.attachment, generation: Number(r.generation), digest: r.digest, agentRun: t.run };
            applies.set(`${rec.agentRun}|${rec.host}|${r.at}|${rec.generation}|${rec.digest}`, rec);
          }
        }));
      }
    };

    // First install: 1.0.0 everywhere, before any fault.
    intend('1.0.0');
    const first = await chaos.cli(['rollout', 'create', '-f', '-', '--wait', '--timeout', '180s'], 'module: pass-counter\nversion: 1.0.0\nattachment: xdp:eth0\nselector: {role: edge}\nmaxUnavailable: 100%\nsteps: [{percent: 100}]\n');
    if (first.code !== 0) throw new Error(`the first install failed: ${first.stdout}${first.stderr}`);
    say('first install done: 1.0.0 on every host');
    const runStart = now();

    const schedule = faultSchedule({ seed: o.seed, durationMs: o.durationMs, meanGapMs: o.meanFaultGapMs, startMs: 0, kinds: o.kinds });
    const faultLoop = (async () => {
      for (const f of schedule) {
        const wait = runStart + f.atMs - now();
        if (wait > 0) await sleep(wait);
        if (ctl.signal.aborted) return;
        try {
          const what = await INJECTORS[f.kind]({ chaos, interfaceDown: (h, down) => (down ? downIfaces.add(h) : downIfaces.delete(h)) }, f.pick);
          faults[f.kind]!++;
          say(`fault ${f.kind}: ${what}`);
        } catch (err) {
          faultErrors.push(`${f.kind} at +${Math.round(now() / 1000)}s: ${(err as Error).message.split('\n')[0]}`);
          say(`fault ${f.kind} could not be injected: ${(err as Error).message.split('\n')[0]}`);
        }
      }
    })();

    const get = async (id: string): Promise<RolloutJson | null> => {
      const r = await chaos.cli(['rollout', 'get', id, '-o', 'json']);
      return r.code === 0 ? (JSON.parse(r.stdout) as RolloutJson) : null;
    };
    const verb = async (args: string[]) => {
      const r = await chaos.cli(args);
      say(`  bpfleet ${args.slice(0, 2).join(' ')} → exit ${r.code}${r.code ? `: ${r.stderr.trim().split('\n')[0]}` : ''}`);
      return r;
    };
    /** Polls until final; checks the bound and, for a bad version, the containment, all along. */
    const follow = async (id: string, createdAt: number, planned: PlannedRollout): Promise<string> => {
      let acted = false;
      let overdue = false;
      for (;;) {
        const r = await get(id);
        const phase = r?.status.phase ?? 'unknown';
        if (planned.bad) {
          const simOnBad = (await hostsObservedOn(etcd, ATTACHMENT, digests.get(BAD_VERSION)!).catch(() => [])).filter((h) => h.startsWith(SIM_PREFIX));
          seen.maxHostsOnBadVersion = Math.max(seen.maxHostsOnBadVersion, kernelHostsOnBad.size + simOnBad.length);
          violate(badVersionContained({ rolloutId: id, canary: 1, hostsOnBad: [...kernelHostsOnBad, ...simOnBad], finalPhase: FINAL.has(phase) ? phase : null, atMs: now() }));
        }
        if (FINAL.has(phase)) return phase;
        if (!overdue) {
          const late = rolloutOverdue({ rolloutId: id, createdAtMs: createdAt, nowMs: now(), boundMs: o.rolloutBoundMs, phase });
          if (late.length) {
            overdue = true;
            violate(late);
            await verb(['rollout', 'abort', id, '--reason', 'chaos: past the bound']);
          }
        } else if (now() - createdAt > 3 * o.rolloutBoundMs) {
          return phase;
        }
        const updated = r?.status.hosts?.some((h) => h.phase === 'HOST_PHASE_UPDATED') ?? false;
        if (!acted && updated && phase === 'ROLLOUT_PHASE_PROGRESSING') {
          acted = true;
          if (planned.scenario === 'pause-resume') {
            await verb(['rollout', 'pause', id, '--reason', 'chaos']);
            await sleep(2_000);
            await verb(['rollout', 'resume', id, '--reason', 'chaos']);
          } else if (planned.scenario === 'promote') {
            await verb(['rollout', 'promote', id, '--reason', 'chaos']);
          } else if (planned.scenario === 'abort') {
            await verb(['rollout', 'abort', id, '--reason', 'chaos']);
          }
        }
        await sleep(1_000);
      }
    };
    const finish = (id: string, phase: string, createdAt: number) => {
      byPhase[phase] = (byPhase[phase] ?? 0) + 1;
      if (FINAL.has(phase)) completed++;
      maxTimeToFinal = Math.max(maxTimeToFinal, now() - createdAt);
      say(`rollout ${id}: ${phase} after ${((now() - createdAt) / 1000).toFixed(1)} s`);
    };

    const plan = rolloutPlan(o.seed);
    let goodIndex = 1;
    while (now() - runStart < o.durationMs) {
      const planned = plan.next().value!;
      const version = planned.bad ? BAD_VERSION : GOOD_VERSIONS[goodIndex++ % GOOD_VERSIONS.length]!;
      intend(version);
      const createdAt = now();
      const created = await chaos.cli(['rollout', 'create', '-f', '-', '-o', 'json'], specFor(version));
      if (created.code !== 0) {
        say(`create ${version} refused (exit ${created.code}): ${created.stderr.trim().split('\n')[0]}`);
        await sleep(2_000);
        continue;
      }
      const id = (JSON.parse(created.stdout) as RolloutJson).id;
      started++;
      if (planned.bad) bad++;
      scenarios[planned.scenario] = (scenarios[planned.scenario] ?? 0) + 1;
      say(`rollout ${id}: ${version} (${planned.bad ? 'bad' : 'good'}, ${planned.scenario})`);
      const phase = await follow(id, createdAt, planned);
      finish(id, phase, createdAt);
      if (planned.scenario === 'undo' && phase === 'ROLLOUT_PHASE_SUCCEEDED') {
        const undone = await chaos.cli(['rollout', 'undo', id, '--reason', 'chaos', '-o', 'json']);
        if (undone.code === 0) {
          const undoId = (JSON.parse(undone.stdout) as RolloutJson).id;
          const undoAt = now();
          started++;
          say(`rollout ${undoId}: undo of ${id}`);
          finish(undoId, await follow(undoId, undoAt, { bad: false, scenario: 'plain' }), undoAt);
        } else {
          say(`undo of ${id} refused (exit ${undone.code}): ${undone.stderr.trim().split('\n')[0]}`);
        }
      }
      await collectApplies();
    }
    ctl.abort();
    await faultLoop;
    await sampler;
    await collectApplies();
    violate(duplicateApplies([...applies.values()], now()));

    const report: ChaosReport = {
      seed: o.seed, durationMs: now() - runStart,
      fleet: { kernelHosts: o.kernelHosts, simHosts: o.simHosts, simDataplane: 'sim hosts are THE SIM DATAPLANE (bench/sim-pool): no kernel', etcdMembers: 3, natsNodes: 3, controlReplicas: o.controlReplicas },
      faults, faultErrors,
      rollouts: { started, completed, byPhase, bad, scenarios, maxTimeToFinalMs: maxTimeToFinal, boundMs: o.rolloutBoundMs },
      violations,
      peakRssBytes: Object.fromEntries(rss.peak), rssCeilingBytes: RSS_CEILING,
      etcdDbBytes: { peak: Object.fromEntries(etcdSize.peak), ceiling: ETCD_DB_CEILING },
      applyRecordsChecked: applies.size,
      witness: seen,
      machine: await machine(),
    };
    say(`done: ${completed}/${started} rollouts final, ${Object.values(faults).reduce((a, b) => a + b, 0)} faults, ${violations.length} violations; peak RSS ${[...rss.peak].map(([p, b]) => `${p} ${mib(b)}`).join(', ')}`);
    if (o.resultsPath) writeFileSync(o.resultsPath, `${JSON.stringify(report, null, 2)}\n`);
    return report;
  } finally {
    ctl.abort();
    etcd.close();
    await chaos.stop();
  }
}

async function machine(): Promise<{ cpus: number; kernel: string }> {
  const os = await import('node:os');
  return { cpus: os.cpus().length, kernel: os.release() };
}
