import type { Etcd3 } from 'etcd3';
import { BpfleetError } from '../../common/errors.js';
import { keys } from '../../common/keys.js';
import { Rollout, RolloutPhase } from '../../proto/gen/bpfleet/v1/rollout.js';
import { decode, encode } from './codec.js';
import { fenced, type Fence } from './fence.js';

export const FINAL_PHASES: ReadonlySet<RolloutPhase> = new Set([
  RolloutPhase.ROLLOUT_PHASE_SUCCEEDED,
  RolloutPhase.ROLLOUT_PHASE_ROLLED_BACK,
  RolloutPhase.ROLLOUT_PHASE_FAILED,
  RolloutPhase.ROLLOUT_PHASE_ABORTED,
]);

export const isFinal = (r: Rollout): boolean => FINAL_PHASES.has(r.status?.phase ?? RolloutPhase.ROLLOUT_PHASE_UNSPECIFIED);

export class NotLeaderError extends BpfleetError {
  constructor(what: string) {
    super('ABORTED', 'NOT_LEADER', `${what}: this controller is no longer the leader`);
  }
}

/** Rollouts in etcd. The API creates them (spec); only the leading controller writes status. */
export class RolloutStore {
  constructor(private readonly etcd: Etcd3) {}

  /**
   * Creates the rollout and takes the module+attachment's active slot in one transaction:
   * two rollouts of the same module on the same attachment would fight over hosts.
   */
  async create(rollout: Rollout): Promise<void> {
    const spec = rollout.spec!;
    const lock = keys.activeLock(spec.module, spec.attachment);
    const txn = await this.etcd
      .if(lock, 'Create', '==', 0)
      .and(keys.rollout(rollout.id), 'Create', '==', 0)
      .then(this.etcd.put(lock).value(rollout.id), this.etcd.put(keys.rollout(rollout.id)).value(encode(Rollout, rollout)))
      .else(this.etcd.get(lock))
      .commit();
    if (!txn.succeeded) {
      const holder = txn.responses[0]?.response_range?.kvs[0]?.value.toString() ?? '?';
      throw new BpfleetError('FAILED_PRECONDITION', 'ROLLOUT_ACTIVE',
        `rollout ${holder} is still active for ${spec.module} on ${spec.attachment}; wait for it to finish or abort it`);
    }
  }

  async get(id: string): Promise<Rollout | null> {
    const text = await this.etcd.get(keys.rollout(id)).string();
    return text === null ? null : decode(Rollout, text);
  }

  async require(id: string): Promise<Rollout> {
    const r = await this.get(id);
    if (!r) throw new BpfleetError('NOT_FOUND', 'ROLLOUT_NOT_FOUND', `rollout ${id} not found`);
    return r;
  }

  async list(): Promise<Rollout[]> {
    const values = await this.etcd.getAll().prefix(keys.rolloutsPrefix).strings();
    return Object.values(values).map((v) => decode(Rollout, v))
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  /** Writes the controller's view; releases the active slot when the rollout is final. */
  async saveStatus(rollout: Rollout, fence: Fence): Promise<void> {
    const ops = [this.etcd.put(keys.rollout(rollout.id)).value(encode(Rollout, rollout))];
    if (isFinal(rollout)) {
      const spec = rollout.spec!;
      ops.push(this.etcd.delete().key(keys.activeLock(spec.module, spec.attachment)) as never);
    }
    const txn = await fenced(this.etcd, fence).then(...ops).commit();
    if (!txn.succeeded) throw new NotLeaderError(`save rollout ${rollout.id}`);
  }
}
