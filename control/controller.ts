import type { Etcd3 } from 'etcd3';
import { chunk, mapLimit, TXN_CONCURRENCY } from '../common/etcd/batch.js';
import { NotLeaderError } from '../common/etcd/fence.js';
import { IntentStore } from '../common/etcd/intents.js';
import type { ModuleRegistry } from '../common/etcd/modules.js';
import { reportMalformed } from '../common/etcd/malformed.js';
import { watchPrefix } from '../common/etcd/watch.js';
import type { HostDirectory } from '../common/etcd/hosts.js';
import { BpfleetError } from '../common/errors.js';
import { keys, nameOf } from '../common/keys.js';
import { traceparentOf } from '../common/spans.js';
import type { Logger } from '../common/log.js';
import { AttachmentStatus, type Intent } from '../proto/gen/bpfleet/v1/agent.js';
import type { ModuleRef } from '../proto/gen/bpfleet/v1/module.js';
import type { Rollout } from '../proto/gen/bpfleet/v1/rollout.js';
import type { AgentClients } from './agent-clients.js';
import { analyze, readsFrom } from './analysis/analyze.js';
import type { TelemetryIngest } from './analysis/ingest.js';
import type { TelemetryStore } from './analysis/telemetry-store.js';
import type { Leadership } from './leader.js';
import { recordApplies, type ApplyAction, type ApplyOutcome } from './rollout/apply-results.js';
import { describe, type RolloutEvent } from './rollout/events.js';
import { reconcile } from './rollout/reconcile.js';
import type { HostView } from './rollout/steps.js';
import { isFinal } from './rollout/vocabulary.js';
import type { AuditLog } from './store/audit.js';
import { RequestStore } from './store/requests.js';
import type { RolloutStore, StoredRollout } from './store/rollouts.js';
import { DrainStore } from './store/drains.js';
import { drainedHosts } from './day2/drain-rules.js';
import { inApplySpan, inPassSpan, recordTransitions, tracedAnalysis } from './tracing.js';

/**
 * A pass that throws (etcd unreachable, a fenced write refused mid-batch) is run again after
 * 200 ms, doubling per consecutive failure of that rollout up to 10 s, for as long as this
 * replica leads: a blip never leaves a rollout where it stopped.
 */
export const PASS_RETRY_FIRST_MS = 200;
export const PASS_RETRY_MAX_MS = 10_000;

/** The pause before running a rollout's pass again after its `failures`-th failure in a row. */
export const passRetryMs = (failures: number): number =>
  Math.min(PASS_RETRY_MAX_MS, PASS_RETRY_FIRST_MS * 2 ** Math.min(30, Math.max(0, failures - 1)));

// Events of one save per audit entry; a wave of thousands of hosts makes a few entries.
const EVENTS_PER_AUDIT_ENTRY = 200;
// A save with more events than this logs one summary line at info, each event at debug.
const EVENTS_LOGGED_ONE_BY_ONE = 10;

export interface ControllerDeps {
  etcd: Etcd3;
  rollouts: RolloutStore;
  modules: ModuleRegistry;
  intents: IntentStore;
  hosts: HostDirectory;
  audit: AuditLog;
  agents: AgentClients;
  telemetry: TelemetryStore;
  /** Where the analysis span finds the installs behind the reports. */
  ingest: Pick<TelemetryIngest, 'contextOf'>;
  log: Logger;
  clock?: () => number;
  /** Operators' requests (pause, resume, ...); by default kept in `etcd`. */
  requests?: RequestStore;
  /** Drained hosts, left out when a rollout is planned; by default kept in `etcd`. */
  drains?: DrainStore;
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
  /** Consecutive failed passes per rollout: the backoff of the next retry. */
  private readonly failures = new Map<string, number>();
  private leadership: Leadership | null = null;
  private term: AbortController | null = null;
  private readonly now: () => number;
  private readonly requests: RequestStore;
  private readonly drains: DrainStore;
  /** Each rollout as this replica last read or saved it, and in which leadership term. */
  private readonly known = new Map<string, StoredRollout & { epoch: number }>();

  constructor(private readonly deps: ControllerDeps) {
    this.now = deps.clock ?? Date.now;
    this.requests = deps.requests ?? new RequestStore(deps.etcd);
    this.drains = deps.drains ?? new DrainStore(deps.etcd);
  }

  /** Called when this replica becomes leader; runs until leadership is lost. */
  async lead(leadership: Leadership): Promise<void> {
    this.leadership = leadership;
    const term = new AbortController();
    this.term = term;
    this.deps.log.info({ epoch: leadership.fence.epoch }, 'leading: resuming unfinished rollouts');
    leadership.lost.addEventListener('abort', () => this.standDown(), { once: true });
    // A rollout moves when its record changes or an operator files a request on it.
    await Promise.all([keys.rolloutsPrefix, keys.requestsPrefix].map((prefix) => this.follow(prefix, term.signal)));
  }

  /**
   * Kicks the rollout a put under `prefix` names (its id is the key's last segment), and
   * every unfinished rollout whenever the prefix was read: at start and after a lost watch.
   * Ends when `signal` aborts; rejects only if the first read of the prefix fails.
   */
  private async follow(prefix: string, signal: AbortSignal): Promise<void> {
    const { log } = this.deps;
    for await (const change of watchPrefix(this.deps.etcd, prefix, { signal, log })) {
      if (change.kind === 'put') {
        // A key that names no rollout was written by hand or by a bug: nothing to move.
        const id = nameOf(prefix, change.key);
        if (id !== null) this.kick(id);
        else reportMalformed(change.key, new Error('the key names no rollout'), log);
      }
      else if (change.kind === 'reset') {
        if (change.cause !== undefined) log.warn({ err: change.cause, prefix }, 'watch failed; resyncing');
        await this.resync().catch((err) => log.error({ err, prefix }, 'resync failed; rollouts move again on their next change'));
      }
    }
  }

  private async resync(): Promise<void> {
    for (const r of await this.deps.rollouts.list({ hosts: false })) if (!isFinal(r)) this.kick(r.id);
  }

  private standDown(): void {
    this.deps.log.warn('lost leadership: stopping rollout work');
    this.leadership = null;
    this.term?.abort();
    this.term = null;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.known.clear();
    this.failures.clear();
  }

  /** Schedules a pass over one rollout; coalesces kicks that arrive during a pass. */
  kick(id: string): void {
    if (!this.leadership) return;
    if (this.running.has(id)) {
      this.again.add(id);
      return;
    }
    const pass = this.pass(id)
      .then(() => { this.failures.delete(id); }, (err) => {
        if (!this.leadership) return;
        const failures = (this.failures.get(id) ?? 0) + 1;
        this.failures.set(id, failures);
        const retryInMs = passRetryMs(failures);
        this.deps.log.error({ err, rollout: id, failures, retryInMs }, 'rollout pass failed; retrying');
        this.schedule(id, retryInMs);
      })
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
    const stored = await this.load(id, leadership);
    if (isFinal(stored.rollout)) {
      this.known.delete(id);
      return;
    }
    await inPassSpan(stored.rollout, () => this.reconcileOnce(stored, leadership));
  }

  /** One reconcile() of the rollout as loaded, and the writes and applies it decides. */
  private async reconcileOnce(stored: StoredRollout, leadership: Leadership): Promise<void> {
    const { log } = this.deps;
    const rollout = stored.rollout;
    const id = rollout.id;
    const spec = rollout.spec!;
    const module = await this.deps.modules.require(spec.module, spec.version);
    const target: ModuleRef = { name: spec.module, version: spec.version, digest: module.digest };
    const fleet = await this.deps.hosts.list();
    // Only planning reads the drains: a planned rollout keeps its hosts (a drain waits for it).
    const unplanned = !rollout.status?.hosts.length && !isFinal(rollout);
    const drained = unplanned ? drainedHosts((await this.drains.list()).map((d) => d.drain)) : new Set<string>();
    const hosts: HostView[] = fleet.map((h) => {
      const a = h.attachments.find((x) => x.attachment === spec.attachment);
      return {
        name: h.name,
        labels: h.labels,
        capabilities: h.capabilities,
        running: a ? { name: a.module, version: a.version, digest: a.digest } : null,
        drained: drained.has(h.name),
        broken: a?.status === AttachmentStatus.ATTACHMENT_STATUS_BROKEN ? a.reason || 'BROKEN' : '',
        unverified: a?.unverified || undefined,
      };
    });
    // Only a plan reads them (to name selected hosts that are down as skipped); a rollout
    // with hosts is planned.
    const absent = rollout.status?.hosts.length ? [] : await this.deps.hosts.departed();
    const requests = await this.requests.list(id);
    const decision = reconcile({
      rollout,
      target,
      hosts,
      absent,
      requests,
      now: this.now(),
      analyze: (req) => {
        const reportsOf = this.deps.telemetry.reader(readsFrom(spec.analysis!, req.from));
        return tracedAnalysis(rollout, req, reportsOf, (r) => this.deps.ingest.contextOf(r), () => analyze({
          spec,
          step: req.step,
          canary: { hosts: req.canaryHosts, digest: target.digest },
          baseline: { hosts: req.baselineHosts },
          from: req.from,
          to: req.to,
          reportsOf,
        }));
      },
    });
    const decided = await this.persist(stored, decision.rollout, decision.events, leadership);
    if (decision.actions.length) {
      const addresses = new Map(fleet.map((h) => [h.name, h.address]));
      const outcomes = await this.execute(decision.actions, addresses, decided.rollout, leadership);
      const recorded = recordApplies(decided.rollout, decision.actions.map((action, i) => ({ action, outcome: outcomes[i]! })), this.now());
      await this.persist(decided, recorded.rollout, recorded.events, leadership);
      this.kick(id);
      return;
    }
    if (decision.requeueAfterMs !== null) this.schedule(id, decision.requeueAfterMs);
    log.debug({ rollout: id, requeueAfterMs: decision.requeueAfterMs }, 'pass done');
  }

  /**
   * The rollout as etcd holds it. While this replica leads nobody else writes rollout status,
   * so the copy it saved last is current as long as the record's revision is the one that
   * save produced: one small read instead of every host's progress again.
   */
  private async load(id: string, leadership: Leadership): Promise<StoredRollout> {
    const known = this.known.get(id);
    if (known && known.epoch === leadership.fence.epoch && (await this.deps.rollouts.revisionOf(id)) === known.revision) return known;
    const stored = await this.deps.rollouts.read(id);
    if (!stored) throw new BpfleetError('NOT_FOUND', 'ROLLOUT_NOT_FOUND', `rollout ${id} not found`);
    this.known.set(id, { ...stored, epoch: leadership.fence.epoch });
    return stored;
  }

  /** Saves (fenced) what changed since `stored`, then logs, traces, counts and audits the events. */
  private async persist(stored: StoredRollout, rollout: Rollout, events: RolloutEvent[], leadership: Leadership): Promise<StoredRollout> {
    if (!events.length) return stored;
    let saved: StoredRollout;
    try {
      saved = { rollout, revision: await this.deps.rollouts.saveStatus(rollout, leadership.fence, stored.rollout) };
    } catch (err) {
      // Part of it may have landed: read it whole next time.
      this.known.delete(rollout.id);
      throw err;
    }
    this.known.set(rollout.id, { ...saved, epoch: leadership.fence.epoch });
    recordTransitions(rollout, events);
    const lines = events.map(describe);
    const { log } = this.deps;
    const fields = { rollout: rollout.id, phase: rollout.status?.phase, step: rollout.status?.step };
    if (lines.length <= EVENTS_LOGGED_ONE_BY_ONE) {
      for (const line of lines) log.info(fields, line);
    } else {
      log.info({ ...fields, events: lines.length }, `${lines[0]} (and ${lines.length - 1} more events)`);
      for (const line of lines) log.debug(fields, line);
    }
    await this.deps.audit.recordAll('controller', 'rollout.transition', rollout.id,
      chunk(lines, EVENTS_PER_AUDIT_ENTRY).map((part) => ({ events: part })));
    return saved;
  }

  /**
   * Records the intents (fenced, many per transaction), then asks each host's agent to apply
   * its own; a batch's applies go out as soon as its intents are stored. Outcomes come back
   * in the order of `actions`.
   */
  private async execute(actions: ApplyAction[], addresses: ReadonlyMap<string, string>, rollout: Rollout, leadership: Leadership): Promise<ApplyOutcome[]> {
    const batches = await mapLimit(chunk(actions, IntentStore.BATCH), TXN_CONCURRENCY, async (batch): Promise<ApplyOutcome[]> => {
      let intents: Intent[];
      try {
        intents = await this.deps.intents.writeAll(batch.map((action) => ({
          host: action.host,
          attachment: rollout.spec!.attachment,
          module: action.module ?? undefined,
          expectedDigest: action.expectedDigest,
          rolloutId: rollout.id,
          traceparent: traceparentOf(),
        })), leadership.fence);
      } catch (err) {
        if (err instanceof NotLeaderError) throw err;
        return batch.map((action) => this.failed(action, err));
      }
      return Promise.all(batch.map((action, i) => inApplySpan(rollout, action, async (): Promise<ApplyOutcome> => {
        try {
          const address = addresses.get(action.host);
          if (!address) throw new BpfleetError('UNAVAILABLE', 'HOST_GONE', `host ${action.host} is no longer registered`);
          const res = await this.deps.agents.apply(address, intents[i]!);
          return { ok: true, progId: res.state?.progId ?? 0 };
        } catch (err) {
          return this.failed(action, err);
        }
      })));
    });
    return batches.flat();
  }

  private failed(action: ApplyAction, err: unknown): ApplyOutcome {
    const e = err instanceof BpfleetError ? err : new BpfleetError('INTERNAL', 'INTERNAL', String(err));
    this.deps.log.warn({ host: action.host, reason: e.reason, detail: e.detail }, `apply failed: ${e.message}`);
    return { ok: false, reason: e.reason, message: e.message, detail: e.detail };
  }

  async stop(): Promise<void> {
    this.standDown();
    await Promise.allSettled(this.running.values());
  }
}
