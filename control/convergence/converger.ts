import { NotLeaderError } from '../../common/etcd/fence.js';
import type { HostDirectory } from '../../common/etcd/hosts.js';
import type { IntentStore } from '../../common/etcd/intents.js';
import { BpfleetError } from '../../common/errors.js';
import { keys } from '../../common/keys.js';
import type { Logger } from '../../common/log.js';
import type { AgentClients } from '../agent-clients.js';
import type { Leadership } from '../leader.js';
import type { AuditLog } from '../store/audit.js';
import type { DesiredStore } from '../store/desired.js';
import type { DrainStore } from '../store/drains.js';
import type { RolloutStore } from '../store/rollouts.js';
import { convergeActions, ownedScopes, type ConvergeAction } from './desired.js';

/** How often the leader looks for hosts that lag behind the desired versions (ms). */
export const CONVERGE_INTERVAL_MS = 2000;
/**
 * A host is moved only once it has been registered this long (ms, as this replica saw it):
 * until a (re)started agent has adopted what its pins run and reported it, its observed
 * record is the previous process's, and an install's expected digest would be a guess.
 */
export const CONVERGE_SETTLE_MS = 3000;
/** The pause before a host+attachment whose install failed is tried again: 2 s, doubling per failure in a row, at most 60 s. */
export const CONVERGE_RETRY_FIRST_MS = 2000;
export const CONVERGE_RETRY_MAX_MS = 60_000;

const retryMs = (failures: number): number => Math.min(CONVERGE_RETRY_MAX_MS, CONVERGE_RETRY_FIRST_MS * 2 ** Math.min(30, failures - 1));

export interface ConvergerDeps {
  hosts: HostDirectory;
  desired: DesiredStore;
  /** Drained hosts run nothing on purpose: never moved (control/day2/). */
  drains: DrainStore;
  rollouts: RolloutStore;
  intents: IntentStore;
  agents: AgentClients;
  audit: AuditLog;
  log: Logger;
  intervalMs?: number;
  settleMs?: number;
  clock?: () => number;
}

/**
 * While this replica leads, moves registered hosts that lag behind the fleet's desired
 * versions (a host that was down during a rollout, a new host) to them: the same fenced
 * intent and the same Apply as a rollout's, so the agent runs the same checks (digest,
 * manifest, signature policy, verifier, compare-and-swap on what runs). The rule of which
 * hosts it moves is pure (desired.ts convergeActions); an active rollout of the module on
 * the attachment owns its hosts, and the intent's transaction checks its slot is free.
 */
export class Converger {
  /** Failures in a row and the earliest next try, per host+attachment. */
  private readonly backoff = new Map<string, { failures: number; next: number }>();
  /** When this replica first saw each registered host (in a row of passes that all saw it). */
  private readonly firstSeen = new Map<string, number>();
  private readonly now: () => number;

  constructor(private readonly deps: ConvergerDeps) {
    this.now = deps.clock ?? Date.now;
  }

  /** Runs passes every intervalMs until leadership is lost; a pass that throws is logged and the next one runs. */
  async lead(leadership: Leadership): Promise<void> {
    const interval = this.deps.intervalMs ?? CONVERGE_INTERVAL_MS;
    this.backoff.clear();
    this.firstSeen.clear();
    while (!leadership.lost.aborted) {
      try {
        await this.pass(leadership);
      } catch (err) {
        if (leadership.lost.aborted || err instanceof NotLeaderError) break;
        this.deps.log.warn({ err }, 'convergence pass failed; trying again');
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, interval);
        leadership.lost.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
      });
    }
  }

  /** One look at the fleet: installs the desired version where the rule says so; returns what it sent. */
  async pass(leadership: Leadership): Promise<ConvergeAction[]> {
    const [registered, drains] = await Promise.all([this.deps.hosts.list(), this.deps.drains.list()]);
    const drained = new Set(drains.map((d) => d.drain.host));
    const hosts = registered.filter((h) => !drained.has(h.name));
    const now = this.now();
    const present = new Set(hosts.map((h) => h.name));
    for (const name of this.firstSeen.keys()) if (!present.has(name)) this.firstSeen.delete(name);
    for (const name of present) if (!this.firstSeen.has(name)) this.firstSeen.set(name, now);
    const records = await this.deps.desired.list();
    if (!records.length) return [];
    const rollouts = await this.deps.rollouts.list({ hosts: false });
    const { actions } = convergeActions({ hosts, records, owned: ownedScopes(rollouts, records) });
    const settle = this.deps.settleMs ?? CONVERGE_SETTLE_MS;
    const due = actions.filter((a) => now - this.firstSeen.get(a.host)! >= settle && (this.backoff.get(`${a.host}\0${a.attachment}`)?.next ?? 0) <= now);
    const addresses = new Map(hosts.map((h) => [h.name, h.address]));
    await Promise.all(due.map((a) => this.install(a, addresses.get(a.host)!, leadership)));
    return due;
  }

  private async install(a: ConvergeAction, address: string, leadership: Leadership): Promise<void> {
    const { log } = this.deps;
    const key = `${a.host}\0${a.attachment}`;
    const was = a.lag.runningVersion || 'nothing';
    try {
      const [intent] = await this.deps.intents.writeAll([{
        host: a.host, attachment: a.attachment, module: a.module, expectedDigest: a.expectedDigest, rolloutId: a.rolloutId,
      }], leadership.fence, [keys.activeLock(a.module.name, a.attachment), keys.drain(a.host)]);
      await this.deps.agents.apply(address, intent!);
      this.backoff.delete(key);
      log.info({ host: a.host, attachment: a.attachment, rollout: a.rolloutId }, `converged ${a.host} ${a.attachment} to ${a.module.name}@${a.module.version} (was ${was})`);
      await this.deps.audit.record('controller', 'host.converge', a.host, {
        attachment: a.attachment, module: a.module.name, version: a.module.version, was, rollout: a.rolloutId,
      });
    } catch (err) {
      if (err instanceof NotLeaderError) throw err;
      const failures = (this.backoff.get(key)?.failures ?? 0) + 1;
      const retryInMs = retryMs(failures);
      this.backoff.set(key, { failures, next: this.now() + retryInMs });
      const e = err instanceof BpfleetError ? err : null;
      log.warn({ host: a.host, attachment: a.attachment, reason: e?.reason, failures, retryInMs, err: e ? undefined : err },
        `could not converge ${a.host} ${a.attachment} to ${a.module.name}@${a.module.version}: ${e?.message ?? String(err)}`);
    }
  }
}
