import type { ComparatorBuilder, Etcd3 } from 'etcd3';

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
