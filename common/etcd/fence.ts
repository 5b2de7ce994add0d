import type { ComparatorBuilder, Etcd3 } from 'etcd3';
import { BpfleetError } from '../errors.js';

/**
 * Proof of leadership for a write: the leader's election key and its create revision
 * (the epoch). A transaction guarded by it fails once the leader's lease is gone, so a
 * deposed leader that wakes up late cannot overwrite what its successor decided.
 */
export interface Fence {
  key: string;
  epoch: number;
}

export function fenced(etcd: Etcd3, fence: Fence): ComparatorBuilder {
  return etcd.if(fence.key, 'Create', '==', fence.epoch);
}

/** A fenced write found the fence gone: another replica leads now, and nothing was written. */
export class NotLeaderError extends BpfleetError {
  constructor(what: string) {
    super('ABORTED', 'NOT_LEADER', `${what}: this controller is no longer the leader`);
  }
}
