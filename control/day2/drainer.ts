import type { Etcd3 } from 'etcd3';
import { codecs } from '../../common/etcd/codec.js';
import type { HostDirectory } from '../../common/etcd/hosts.js';
import type { IntentStore } from '../../common/etcd/intents.js';
import { decodeOrSkip } from '../../common/etcd/malformed.js';
import { NotLeaderError } from '../../common/etcd/fence.js';
import { watchPrefix } from '../../common/etcd/watch.js';
import { BpfleetError } from '../../common/errors.js';
import { keys } from '../../common/keys.js';
import type { Logger } from '../../common/log.js';
import type { Intent } from '../../proto/gen/bpfleet/v1/agent.js';
import { DrainState } from '../../proto/gen/bpfleet/v1/control.js';
import type { Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import type { AgentClients } from '../agent-clients.js';
import type { Leadership } from '../leader.js';
import type { AuditLog } from '../store/audit.js';
import type { DrainStore, StoredDrain } from '../store/drains.js';
import type { RolloutStore } from '../store/rollouts.js';
import { drainStateName, drainStep, rolloutsHolding, type RunningProgram } from './drain-rules.js';

/**
 * How often the leader looks at every unsettled drain besides when a drain changes: an
 * agent's removals land in its observed state, and a host that comes back re-registers,
 * neither of which writes the drain.
 */
export const DRAIN_CHECK_MS = 1000;

export interface DrainerDeps {
  etcd: Etcd3;
  drains: DrainStore;
  hosts: HostDirectory;
  intents: IntentStore;
  rollouts: RolloutStore;
  agents: AgentClients;
  audit: AuditLog;
  log: Logger;
  clock?: () => Date;
}

/**
 * The leader's half of draining (the API records drains, control/api/day2.ts): while this
 * replica leads, it moves every drain on by drainStep() — removal intents written fenced
 * and applied on the host, the state stored (fenced, compare-and-swap on the drain's key),
 * a decommissioned host's records deleted in that same transaction.
 */
export class Drainer {
  private term: AbortController | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private timer: NodeJS.Timeout | null = null;
  private leadership: Leadership | null = null;

  constructor(private readonly deps: DrainerDeps) {}

  /** Called when this replica becomes leader; runs until leadership is lost. */
  async lead(leadership: Leadership): Promise<void> {
    this.leadership = leadership;
    const term = new AbortController();
    this.term = term;
    leadership.lost.addEventListener('abort', () => this.standDown(), { once: true });
    this.timer = setInterval(() => this.kick(), DRAIN_CHECK_MS);
    this.timer.unref();
    for await (const change of watchPrefix(this.deps.etcd, keys.drainsPrefix, { signal: term.signal, log: this.deps.log })) {
      if (change.kind !== 'delete') this.kick();
    }
  }

  /** Runs a pass over every drain; coalesces kicks that arrive during one. */
  kick(): void {
    if (!this.leadership) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.pass().catch((err) => {
      if (this.leadership) this.deps.log.error({ err }, 'drain pass failed; trying again on the next check');
    }).finally(() => {
      this.running = null;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
  }

  private async pass(): Promise<void> {
    const leadership = this.leadership;
    if (!leadership) return;
    const drains = await this.deps.drains.list();
    // Rollout records are kept for ever: read them only when a drain still has work to do.
    let unfinished: Promise<Rollout[]> | null = null;
    const rollouts = () => (unfinished ??= this.deps.rollouts.unfinished());
    for (const stored of drains) {
      if (leadership.lost.aborted) return;
      await this.advance(stored, rollouts, leadership);
    }
  }

  private async advance(stored: StoredDrain, unfinished: () => Promise<Rollout[]>, leadership: Leadership): Promise<void> {
    const { drain } = stored;
    const name = drain.host;
    const host = await this.deps.hosts.get(name);
    const running = await this.runningOn(name);
    // A settled drain whose host runs nothing has nothing a rollout could hold up: planning
    // leaves drained hosts out, and the drain was refused while one held the host.
    const settled = !running.length && (drain.state === DrainState.DRAIN_STATE_DRAINED || drain.state === DrainState.DRAIN_STATE_DECOMMISSIONED);
    const intents = new Map<string, Intent>([...(await this.deps.intents.list(name, this.deps.log)).items.values()].map((i) => [i.attachment, i]));
    const step = drainStep(drain, {
      registered: host !== null, running, intents, now: (this.deps.clock ?? (() => new Date()))(),
      holding: settled ? [] : rolloutsHolding(name, host?.labels ?? null, await unfinished()),
    });
    if (step.remove.length) await this.remove(name, step.remove, host?.address ?? null, leadership);
    if (step.drain === drain && !step.forget) return;
    const saved = await this.deps.drains.advance(step.drain, stored.revision, leadership.fence, step.forget);
    if (!saved) return; // undrained or requested again meanwhile: the next pass sees the new record
    if (step.drain.state !== drain.state) {
      this.deps.log.info({ host: name, state: drainStateName(step.drain.state) }, `drain of ${name}: ${step.drain.message}`);
      await this.deps.audit.record('controller', `host.${drainStateName(step.drain.state)}`, name, { message: step.drain.message });
    }
  }

  /** What the host's agent last reported running (also when it is no longer registered). */
  private async runningOn(host: string): Promise<RunningProgram[]> {
    const key = keys.observed(host);
    const text = await this.deps.etcd.get(key).string();
    const state = text === null ? null : decodeOrSkip(key, text, codecs.observed.decode, this.deps.log);
    return (state?.attachments ?? []).filter((a) => a.module?.digest).map((a) => ({
      attachment: a.attachment, module: `${a.module!.name}@${a.module!.version}`, digest: a.module!.digest,
    }));
  }

  /**
   * Writes the removal intents (fenced), then asks the agent to apply them. An apply that
   * fails is logged and tried again on a later pass; an agent that is gone finds the
   * intents in etcd when it starts.
   */
  private async remove(host: string, programs: readonly RunningProgram[], address: string | null, leadership: Leadership): Promise<void> {
    const intents = await this.deps.intents.writeAll(programs.map((p) => ({
      host, attachment: p.attachment, module: undefined, expectedDigest: p.digest, rolloutId: '',
    })), leadership.fence);
    if (!address) return;
    await Promise.all(intents.map(async (intent) => {
      try {
        await this.deps.agents.apply(address, intent);
        this.deps.log.info({ host, attachment: intent.attachment }, 'drain: program removed');
      } catch (err) {
        if (err instanceof NotLeaderError) throw err;
        const e = err instanceof BpfleetError ? `${err.reason}: ${err.message}` : String(err);
        this.deps.log.warn({ host, attachment: intent.attachment }, `drain: removal not applied yet: ${e}`);
      }
    }));
  }

  private standDown(): void {
    this.leadership = null;
    this.term?.abort();
    this.term = null;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  async stop(): Promise<void> {
    this.standDown();
    await this.running;
  }
}
