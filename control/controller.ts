import type { Etcd3, Watcher } from 'etcd3';
import { BpfleetError } from '../common/errors.js';
import { keys } from '../common/keys.js';
import type { Logger } from '../common/log.js';
import type { ModuleRef } from '../proto/gen/bpfleet/v1/module.js';
import type { Rollout } from '../proto/gen/bpfleet/v1/rollout.js';
import type { AgentClients } from './agent-clients.js';
import { analyze } from './analysis/analyze.js';
import type { TelemetryStore } from './analysis/telemetry-store.js';
import type { Leadership } from './leader.js';
import { reconcile, recordApply, type ApplyAction, type ApplyOutcome, type HostView } from './rollout/reconcile.js';
import type { AuditLog } from './store/audit.js';
import type { HostDirectory } from './store/hosts.js';
import type { IntentStore } from './store/intents.js';
import type { ModuleRegistry } from './store/modules.js';
import { isFinal, type RolloutStore } from './store/rollouts.js';

export interface ControllerDeps {
  etcd: Etcd3;
  rollouts: RolloutStore;
  modules: ModuleRegistry;
  intents: IntentStore;
  hosts: HostDirectory;
  audit: AuditLog;
  agents: AgentClients;
  telemetry: TelemetryStore;
  log: Logger;
  clock?: () => number;
}

/**
 * The loop around reconcile(): while this replica leads, it keeps every unfinished rollout
 * moving. Each rollout has at most one pass running; a pass persists the decision (fenced)
 * before it sends applies, so a successor leader resumes from etcd, never from memory.
 */
export class RolloutController {
  private readonly running = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private leadership: Leadership | null = null;
  private watcher: Watcher | null = null;
  private readonly now: () => number;

  constructor(private readonly deps: ControllerDeps) {
    this.now = deps.clock ?? Date.now;
  }

  /** Called when this replica becomes leader; runs until leadership is lost. */
  async lead(leadership: Leadership): Promise<void> {
    this.leadership = leadership;
    const { log } = this.deps;
    log.info({ epoch: leadership.fence.epoch }, 'leading: resuming unfinished rollouts');
    leadership.lost.addEventListener('abort', () => this.standDown(), { once: true });
    this.watcher = await this.deps.etcd.watch().prefix(keys.rolloutsPrefix).create();
    this.watcher.on('put', (kv) => this.kick(decodeURIComponent(kv.key.toString().slice(keys.rolloutsPrefix.length))));
    this.watcher.on('error', (err) => {
      // A cancelled watch (e.g. after compaction) is not recreated by the client: resync.
      log.warn({ err }, 'rollout watch failed; resyncing');
      void this.resync();
    });
    await this.resync();
  }

  private async resync(): Promise<void> {
    for (const r of await this.deps.rollouts.list()) if (!isFinal(r)) this.kick(r.id);
  }

  private standDown(): void {
    this.deps.log.warn('lost leadership: stopping rollout work');
    this.leadership = null;
    void this.watcher?.cancel();
    this.watcher = null;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  /** Schedules a pass over one rollout; coalesces kicks that arrive during a pass. */
  kick(id: string): void {
    if (!this.leadership) return;
    if (this.running.has(id)) {
      this.again.add(id);
      return;
    }
    const pass = this.pass(id)
      .catch((err) => this.deps.log.error({ err, rollout: id }, 'rollout pass failed'))
      .finally(() => {
        this.running.delete(id);
        if (this.again.delete(id)) this.kick(id);
      });
    this.running.set(id, pass);
  }

  private schedule(id: string, afterMs: number): void {
    clearTimeout(this.timers.get(id));
    this.timers.set(id, setTimeout(() => {
      this.timers.delete(id);
      this.kick(id);
    }, afterMs));
  }

  private async pass(id: string): Promise<void> {
    const leadership = this.leadership;
    if (!leadership) return;
    const { rollouts, log } = this.deps;
    let rollout = await rollouts.require(id);
    if (isFinal(rollout)) return;
    const spec = rollout.spec!;
    const module = await this.deps.modules.require(spec.module, spec.version);
    const target: ModuleRef = { name: spec.module, version: spec.version, digest: module.digest };
    const fleet = await this.deps.hosts.list();
    const hosts: HostView[] = fleet.map((h) => {
      const a = h.attachments.find((x) => x.attachment === spec.attachment);
      return {
        name: h.name,
        labels: h.labels,
        capabilities: h.capabilities,
        running: a ? { name: a.module, version: a.version, digest: a.digest } : null,
      };
    });
    const decision = reconcile({
      rollout,
      target,
      hosts,
      inFlight: new Set(),
      now: this.now(),
      analyze: (req) => analyze({
        spec,
        step: req.step,
        canary: { hosts: req.canaryHosts, digest: target.digest },
        baseline: { hosts: req.baselineHosts },
        from: req.from,
        to: req.to,
        reportsOf: (h) => this.deps.telemetry.reports(h),
      }),
    });
    rollout = decision.rollout;
    await this.persist(rollout, decision.events, leadership);
    if (decision.actions.length) {
      const addresses = new Map(fleet.map((h) => [h.name, h.address]));
      const results = await Promise.all(decision.actions.map(async (action) =>
        ({ action, outcome: await this.execute(action, addresses.get(action.host), rollout, leadership) })));
      const events: string[] = [];
      for (const { action, outcome } of results) {
        const recorded = recordApply(rollout, action, outcome, this.now());
        rollout = recorded.rollout;
        events.push(recorded.event);
      }
      await this.persist(rollout, events, leadership);
      this.kick(id);
      return;
    }
    if (decision.requeueAfterMs !== null) this.schedule(id, decision.requeueAfterMs);
    log.debug({ rollout: id, requeueAfterMs: decision.requeueAfterMs }, 'pass done');
  }

  private async persist(rollout: Rollout, events: string[], leadership: Leadership): Promise<void> {
    if (!events.length) return;
    await this.deps.rollouts.saveStatus(rollout, leadership.fence);
    for (const event of events) {
      this.deps.log.info({ rollout: rollout.id, phase: rollout.status?.phase, step: rollout.status?.step }, event);
      await this.deps.audit.record('controller', 'rollout.transition', rollout.id, { event });
    }
  }

  /** Records the intent (fenced), then asks the host's agent to apply it. */
  private async execute(action: ApplyAction, address: string | undefined, rollout: Rollout, leadership: Leadership): Promise<ApplyOutcome> {
    try {
      const intent = await this.deps.intents.write({
        host: action.host,
        attachment: rollout.spec!.attachment,
        module: action.module ?? undefined,
        expectedDigest: action.expectedDigest,
        rolloutId: rollout.id,
      }, leadership.fence);
      if (!address) throw new BpfleetError('UNAVAILABLE', 'HOST_GONE', `host ${action.host} is no longer registered`);
      const res = await this.deps.agents.apply(address, intent);
      return { ok: true, progId: res.state?.progId ?? 0 };
    } catch (err) {
      const e = err instanceof BpfleetError ? err : new BpfleetError('INTERNAL', 'INTERNAL', String(err));
      this.deps.log.warn({ host: action.host, reason: e.reason, detail: e.detail }, `apply failed: ${e.message}`);
      return { ok: false, reason: e.reason, message: e.message };
    }
  }

  async stop(): Promise<void> {
    this.standDown();
    await Promise.allSettled(this.running.values());
  }
}
