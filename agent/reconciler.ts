import { parseAttachment } from '../common/attachment.js';
import { digestOf } from '../common/digest.js';
import { BpfleetError } from '../common/errors.js';
import { echo } from '../common/limits.js';
import { enforceSignaturePolicy, type SignaturePolicy } from '../common/signing.js';
import { AttachmentStatus, type ApplyRecord, type AttachmentState, type GetStateResponse, type Intent } from '../proto/gen/bpfleet/v1/agent.js';
import type { Module } from '../proto/gen/bpfleet/v1/module.js';
import type { SwapCheckpoint } from './crash-hook.js';
import type { AttachmentHealth, DataplaneDriver, RunningModule } from './dataplane/driver.js';

/** Where an agent gets what an intent names. */
export interface ModuleSource {
  module(name: string, version: string): Promise<Module | null>;
  object(digest: string): Promise<Uint8Array>;
}

/** Where an agent reports what it runs (etcd in production). */
export interface StateSink {
  report(state: GetStateResponse): Promise<void>;
}

export interface ApplyResult {
  state: AttachmentState;
  changed: boolean;
  fetchMs: number;
  loadMs: number;
  swapMs: number;
}

export interface ReconcilerOptions {
  /**
   * Checked on every module an intent names before its object is fetched or anything is
   * loaded (also when it already runs), and on every program adopted after a restart (see
   * adopt()). Not on removals: removing runs no code (docs/SECURITY.md, "Signatures").
   */
  signatures?: SignaturePolicy;
  /**
   * The current leader's epoch (its election key's create revision in etcd), or null when
   * no leader is elected. An intent whose epoch is above it is refused (EPOCH_AHEAD_OF_LEADER):
   * no leader ever issued it, so it would only block the real leader's intents. Read only
   * when an intent's epoch is above every epoch this agent has already checked.
   */
  leaderEpoch?: () => Promise<number | null>;
  /** Test hook (see crash-hook.ts). */
  checkpoint?: SwapCheckpoint;
}


/**
 * Applies waiting behind the running one, per attachment. The controller sends one apply
 * per host and attachment at a time and the intent watch a few more; a client sending
 * more is refused (UNAVAILABLE/APPLY_QUEUE_FULL) rather than queued without end.
 */
export const MAX_PENDING_APPLIES = 16;

/** Records kept in Reconciler.history, newest last; older ones are dropped. */
export const MAX_APPLY_HISTORY = 1000;

/**
 * Turns intents into dataplane state, one attachment at a time. Idempotent (an intent
 * already satisfied is a no-op) and fenced (an intent older than one already applied, by
 * generation or by leader epoch, is refused), so replays and late RPCs from a deposed
 * leader cannot move a host backwards.
 */
export class Reconciler {
  // Per attachment: the last apply queued and how many are queued or running. Both go when
  // the attachment's queue drains, so intents naming any number of attachments leave nothing.
  private readonly queues = new Map<string, { last: Promise<unknown>; size: number }>();
  private readonly states = new Map<string, AttachmentState>();
  // Kept apart from `states` because they must outlive a removal: otherwise a late intent
  // older than the removal would find no marks and re-install what was removed.
  private readonly fences = new Map<string, Pick<AttachmentState, 'generation' | 'leaderEpoch'>>();
  // Bumped by every apply that sets or drops a state: a recheck() that read the kernel before
  // an apply landed must not overwrite what the apply reported.
  private stateSeq = 0;
  private readonly stateSeqOf = new Map<string, number>();
  /** One record per apply that changed the dataplane, the last MAX_APPLY_HISTORY: tests and audits count them. */
  readonly history: ApplyRecord[] = [];
  private readonly changeListeners = new Set<(attachment: string) => void>();
  /** The highest leader epoch etcd confirmed so far: intents up to it need no read. */
  private confirmedEpoch = 0;
  // Adopted programs that failed the signature policy, by attachment: the flag outlives a
  // BROKEN spell (the interface gone and back runs the same pinned program) until an apply
  // installs or removes something there.
  private readonly unverified = new Map<string, { digest: string; reason: string; message: string }>();

  constructor(
    readonly host: string,
    private readonly driver: DataplaneDriver,
    private readonly source: ModuleSource,
    private readonly sink: StateSink,
    private readonly clock: () => Date = () => new Date(),
    private readonly options: ReconcilerOptions = {},
  ) {}

  /**
   * Adopts what already runs (pinned by an earlier agent process) and the fencing marks
   * it last reported, instead of loading anything again.
   *
   * Under a signature policy each adopted program's module is checked against it as an
   * install would be (registry record, digest, signature): the policy may be stricter than
   * the one it was installed under. One that fails is reported UNVERIFIED with the reason
   * and left running: detaching it without an intent could open what it guards, and only
   * an intent names a verified replacement (which then swaps it atomically as usual). An
   * intent naming the unverified module itself is refused by the same check in apply(),
   * so it never counts as satisfied.
   */
  async adopt(reported: readonly AttachmentState[]): Promise<RunningModule[]> {
    const running = await this.driver.observe();
    for (const r of running) {
      const prior = reported.find((s) => s.attachment === r.attachment && s.module?.digest === r.digest);
      const state = this.stateOf(r, prior ?? null);
      const refused = await this.policyRefusal(r);
      if (refused) this.unverified.set(r.attachment, { digest: r.digest, reason: refused.reason, message: refused.message });
      this.setState(this.flagged(state));
    }
    await this.publish();
    return running;
  }

  /** `state` as UNVERIFIED when its program is an adopted one that failed the policy; else as is. */
  private flagged(state: AttachmentState): AttachmentState {
    const flag = this.unverified.get(state.attachment);
    if (!flag || state.module?.digest !== flag.digest || state.status === AttachmentStatus.ATTACHMENT_STATUS_BROKEN) return state;
    return { ...state, status: AttachmentStatus.ATTACHMENT_STATUS_UNVERIFIED, reason: flag.reason, message: flag.message };
  }

  /** Why the module `r` runs fails the signature policy, or null (also without a policy). */
  private async policyRefusal(r: Pick<RunningModule, 'attachment' | 'name' | 'version' | 'digest'>): Promise<BpfleetError | null> {
    const policy = this.options.signatures;
    if (!policy) return null;
    try {
      const module = await this.source.module(r.name, r.version);
      if (!module) throw new BpfleetError('NOT_FOUND', 'MODULE_NOT_FOUND', `adopted ${r.name}@${r.version} on ${r.attachment}, which the registry does not have`);
      this.checkRecord(module, { name: r.name, version: r.version, digest: r.digest }, policy);
      return null;
    } catch (err) {
      // A registry that cannot be read verifies nothing either; an intent naming the module checks it again.
      return err instanceof BpfleetError ? err : new BpfleetError('UNAVAILABLE', 'STORE_UNAVAILABLE', `adopted ${r.name}@${r.version}: the registry could not be read: ${String(err)}`);
    }
  }

  /**
   * The registry's record `module` for `ref` is the one an install may use: same digest,
   * filed under its own name@version, and accepted by `policy` when there is one.
   */
  private checkRecord(module: Module, ref: { name: string; version: string; digest: string }, policy: SignaturePolicy | undefined): void {
    if (module.digest !== ref.digest) {
      throw new BpfleetError('FAILED_PRECONDITION', 'DIGEST_MISMATCH', `intent wants ${ref.name}@${ref.version} with digest ${ref.digest}, the registry has ${module.digest}`);
    }
    // A signature covers the manifest's name@version, so a record copied under another
    // version's key must not pass for that version.
    if (module.manifest?.name !== ref.name || module.manifest.version !== ref.version) {
      throw new BpfleetError('FAILED_PRECONDITION', 'REGISTRY_MISMATCH', `the registry's record for ${ref.name}@${ref.version} describes ${module.manifest?.name}@${module.manifest?.version}`);
    }
    if (policy) enforceSignaturePolicy(module, policy);
  }

  state(): GetStateResponse {
    return { host: this.host, labels: {}, attachments: [...this.states.values()].sort((a, b) => a.attachment.localeCompare(b.attachment)) };
  }

  /**
   * Applies `intent` after the applies queued before it on its attachment. An intent for
   * another host or with an attachment that does not parse is refused before it is queued;
   * so is one past MAX_PENDING_APPLIES on its attachment.
   */
  apply(intent: Intent): Promise<ApplyResult> {
    try {
      this.admit(intent);
    } catch (err) {
      return Promise.reject(err);
    }
    const key = intent.attachment;
    const queue = this.queues.get(key) ?? { last: Promise.resolve(), size: 0 };
    if (queue.size >= MAX_PENDING_APPLIES) {
      return Promise.reject(new BpfleetError('UNAVAILABLE', 'APPLY_QUEUE_FULL', `${queue.size} applies already wait on ${key}; try again later`));
    }
    const next = queue.last.catch(() => undefined).then(() => this.applyNow(intent)).then((result) => {
      if (result.changed) for (const listener of this.changeListeners) listener(intent.attachment);
      return result;
    }).finally(() => {
      if (--queue.size === 0 && this.queues.get(key) === queue) this.queues.delete(key);
    });
    queue.last = next;
    queue.size++;
    this.queues.set(key, queue);
    return next;
  }

  /** Applies waiting or running on the attachment (for tests and metrics). */
  pendingApplies(attachment: string): number {
    return this.queues.get(attachment)?.size ?? 0;
  }

  private admit(intent: Intent): void {
    if (intent.host !== this.host) {
      throw new BpfleetError('INVALID_ARGUMENT', 'WRONG_HOST', `intent for host ${echo(intent.host)} sent to ${this.host}`);
    }
    parseAttachment(intent.attachment);
  }

  private record(entry: ApplyRecord): void {
    this.history.push(entry);
    if (this.history.length > MAX_APPLY_HISTORY) this.history.splice(0, this.history.length - MAX_APPLY_HISTORY);
  }

  /** Calls `listener` after every apply that changed the dataplane; returns an unsubscribe. */
  onChange(listener: (attachment: string) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  private async applyNow(intent: Intent): Promise<ApplyResult> {
    const attachment = parseAttachment(intent.attachment);
    if (!this.driver.capabilities().includes(attachment.hook)) {
      throw new BpfleetError('FAILED_PRECONDITION', 'HOOK_UNSUPPORTED', `${this.host} cannot attach ${attachment.hook} programs (supports: ${this.driver.capabilities().join(', ')})`);
    }
    const current = this.fences.get(intent.attachment);
    if (current) {
      if (intent.leaderEpoch < current.leaderEpoch) {
        throw new BpfleetError('FAILED_PRECONDITION', 'STALE_EPOCH', `intent from leader epoch ${intent.leaderEpoch}, but epoch ${current.leaderEpoch} already applied on ${intent.attachment}`);
      }
      if (intent.leaderEpoch === current.leaderEpoch && intent.generation < current.generation) {
        throw new BpfleetError('FAILED_PRECONDITION', 'STALE_GENERATION', `intent generation ${intent.generation} is older than ${current.generation} already applied on ${intent.attachment}`);
      }
    }
    await this.checkEpoch(intent);
    const ref = intent.module;
    if (!ref || !ref.digest) {
      // Removal is a compare-and-swap too: detaching a program the intent did not expect
      // would destroy what someone else put there.
      const running = (await this.driver.observe()).find((r) => r.attachment === intent.attachment);
      if (running && running.digest !== intent.expectedDigest) {
        throw new BpfleetError('FAILED_PRECONDITION', 'DRIFT',
          `remove ${intent.attachment}: attachment runs ${running.digest}, expected ${intent.expectedDigest || 'nothing'}`);
      }
      const updatedAt = this.clock().toISOString();
      // Also when nothing runs: a module whose interface is gone keeps its pins until removed.
      await this.driver.remove(attachment);
      if (running) {
        this.record({ at: updatedAt, attachment: intent.attachment, digest: '', generation: intent.generation, rolloutId: intent.rolloutId });
      }
      // Marks come only from a request that changed something: a no-op removal carrying a
      // forged epoch must not fence out the real leader's next intent.
      const changed = Boolean(running) || this.states.has(intent.attachment);
      this.states.delete(intent.attachment);
      this.unverified.delete(intent.attachment);
      this.stateSeqOf.set(intent.attachment, ++this.stateSeq);
      if (changed) this.fences.set(intent.attachment, { generation: intent.generation, leaderEpoch: intent.leaderEpoch });
      await this.publish();
      return { state: { attachment: intent.attachment, module: undefined, progId: 0, linkId: 0, progTag: '', generation: intent.generation, rolloutId: intent.rolloutId, leaderEpoch: intent.leaderEpoch, updatedAt, status: AttachmentStatus.ATTACHMENT_STATUS_UNSPECIFIED, reason: '', message: '' }, changed: Boolean(running), fetchMs: 0, loadMs: 0, swapMs: 0 };
    }
    const t0 = performance.now();
    const module = await this.source.module(ref.name, ref.version);
    if (!module) throw new BpfleetError('NOT_FOUND', 'MODULE_NOT_FOUND', `module ${ref.name}@${ref.version} is not registered`);
    this.checkRecord(module, ref, this.options.signatures);
    const object = await this.source.object(ref.digest);
    const actual = digestOf(object);
    if (actual !== ref.digest) {
      throw new BpfleetError('FAILED_PRECONDITION', 'DIGEST_MISMATCH', `object for ${ref.name}@${ref.version} has digest ${actual}, expected ${ref.digest}`);
    }
    const fetchMs = performance.now() - t0;
    const result = await this.driver.install(attachment, { manifest: module.manifest!, digest: ref.digest, object }, intent.expectedDigest || null);
    // What runs now passed the policy check above, whether this install changed it or not.
    this.unverified.delete(intent.attachment);
    // Marks come only from a request that changed something (see the removal above); an
    // intent already satisfied leaves the marks of the apply that did the work. A program
    // adopted without marks (the agent died between the swap and its report) has no such
    // apply: the intent it satisfies supplies them, after the epoch check above.
    // The state still comes from what runs: a BROKEN report the driver repaired becomes RUNNING.
    const kept = result.changed ? undefined : this.states.get(intent.attachment);
    const keptMarks = kept !== undefined && kept.module?.digest === ref.digest && (kept.generation > 0 || kept.leaderEpoch > 0);
    const marks = keptMarks ? kept : intent;
    const state = this.stateOf(result.running, { generation: marks.generation, leaderEpoch: marks.leaderEpoch, rolloutId: marks.rolloutId });
    this.setState(state);
    if (result.changed && intent.expectedDigest) this.options.checkpoint?.('before-report');
    if (result.changed) {
      this.record({ at: state.updatedAt, attachment: intent.attachment, digest: ref.digest, generation: intent.generation, rolloutId: intent.rolloutId });
    }
    await this.publish();
    return { state, changed: result.changed, fetchMs, loadMs: result.timing.loadMs, swapMs: result.timing.swapMs };
  }

  /**
   * Compares what this agent reports with what the kernel runs (driver.check()), and
   * publishes when they differ: an attachment the kernel no longer runs is reported BROKEN
   * with the driver's reason (or NOT_ATTACHED when the driver knows nothing of it), one the
   * driver attached again is RUNNING with its new link. The fencing marks stay. Returns the
   * attachments whose report changed.
   */
  async recheck(): Promise<string[]> {
    const started = this.stateSeq;
    const found = new Map((await this.driver.check()).map((h) => [h.attachment, h]));
    const changed: string[] = [];
    for (const [key, state] of this.states) {
      if ((this.stateSeqOf.get(key) ?? 0) > started) continue;
      const next = this.rechecked(state, found.get(key));
      if (next) {
        this.states.set(key, next);
        changed.push(key);
      }
    }
    // Pinned by an earlier agent process, but not running when this one adopted what runs.
    for (const [key, health] of found) {
      if (this.states.has(key) || (this.stateSeqOf.get(key) ?? 0) > started) continue;
      const module = health.status === 'running' ? health.running : health;
      // Adopted now, so checked against the policy as adopt() checks what runs at start.
      const refused = await this.policyRefusal({ attachment: key, name: module.name, version: module.version, digest: module.digest });
      // An apply may have landed during the registry read: it decides then.
      if (this.states.has(key) || (this.stateSeqOf.get(key) ?? 0) > started) continue;
      if (refused) this.unverified.set(key, { digest: module.digest, reason: refused.reason, message: refused.message });
      const unknown = this.stateOf({ attachment: key, digest: module.digest, name: module.name, version: module.version, progId: 0, linkId: 0, progTag: '' }, null);
      const next = this.rechecked({ ...unknown, status: AttachmentStatus.ATTACHMENT_STATUS_UNSPECIFIED }, health);
      if (next) {
        this.states.set(key, next);
        changed.push(key);
      }
    }
    if (changed.length) await this.publish();
    return changed;
  }

  /** The state `health` calls for, or null when `state` already says it. */
  private rechecked(state: AttachmentState, health: AttachmentHealth | undefined): AttachmentState | null {
    const marks = { generation: state.generation, leaderEpoch: state.leaderEpoch, rolloutId: state.rolloutId };
    if (health?.status === 'running') {
      const r = health.running;
      const same = state.status !== AttachmentStatus.ATTACHMENT_STATUS_BROKEN && state.progId === r.progId && state.linkId === r.linkId &&
        state.module?.digest === r.digest;
      return same ? null : this.flagged(this.stateOf(r, marks));
    }
    const reason = health?.reason ?? 'NOT_ATTACHED';
    const message = health?.message ?? `${state.attachment}: the kernel runs nothing bpfleet pinned here`;
    if (state.status === AttachmentStatus.ATTACHMENT_STATUS_BROKEN && state.reason === reason && state.message === message) return null;
    return {
      ...state, progId: 0, linkId: 0, progTag: '', updatedAt: this.clock().toISOString(),
      status: AttachmentStatus.ATTACHMENT_STATUS_BROKEN, reason, message,
    };
  }

  /** Refuses an intent from an epoch no leader has reached yet (see ReconcilerOptions.leaderEpoch). */
  private async checkEpoch(intent: Intent): Promise<void> {
    if (!this.options.leaderEpoch || intent.leaderEpoch <= this.confirmedEpoch) return;
    const leader = await this.options.leaderEpoch();
    if (leader !== null) this.confirmedEpoch = Math.max(this.confirmedEpoch, leader);
    if (leader === null || intent.leaderEpoch > leader) {
      throw new BpfleetError('FAILED_PRECONDITION', 'EPOCH_AHEAD_OF_LEADER',
        `intent from leader epoch ${intent.leaderEpoch}, but the current leader's epoch is ${leader ?? 'none (no leader elected)'}`);
    }
  }

  private setState(state: AttachmentState): void {
    this.stateSeqOf.set(state.attachment, ++this.stateSeq);
    this.states.set(state.attachment, state);
    this.fences.set(state.attachment, { generation: state.generation, leaderEpoch: state.leaderEpoch });
  }

  private stateOf(r: RunningModule, marks: Pick<AttachmentState, 'generation' | 'leaderEpoch' | 'rolloutId'> | null): AttachmentState {
    return {
      attachment: r.attachment,
      module: { name: r.name, version: r.version, digest: r.digest },
      progId: r.progId,
      linkId: r.linkId,
      progTag: r.progTag,
      generation: marks?.generation ?? 0,
      leaderEpoch: marks?.leaderEpoch ?? 0,
      rolloutId: marks?.rolloutId ?? '',
      updatedAt: this.clock().toISOString(),
      status: AttachmentStatus.ATTACHMENT_STATUS_RUNNING,
      reason: '',
      message: '',
    };
  }

  private async publish(): Promise<void> {
    await this.sink.report(this.state());
  }
}
