/**
 * A real etcd for store tests, with a client and the fence of a leader key written on it:
 * what a leader-only write (common/etcd/fence.ts) needs, without running an election.
 */
import { Etcd3 } from 'etcd3';
import type { Fence } from '../../common/etcd/fence.js';
import type { CleanupStack } from '../../dev/cleanup.js';
import { startEtcd, type EtcdServer } from '../../dev/etcd.js';

export const TEST_LEADER_KEY = '/bpfleet/election/leader/test';

/** Starts etcd and a client (both stopped by `cleanup`) and writes TEST_LEADER_KEY; its create revision is the fence's epoch. */
export async function etcdWithLeader(cleanup: CleanupStack): Promise<{ server: EtcdServer; etcd: Etcd3; fence: Fence }> {
  const server = await startEtcd();
  cleanup.defer(() => server.stop(), 'stop etcd');
  const etcd = new Etcd3({ hosts: server.endpoint });
  cleanup.defer(() => etcd.close(), 'close the etcd client');
  const put = await etcd.put(TEST_LEADER_KEY).value('me').exec();
  return { server, etcd, fence: { key: TEST_LEADER_KEY, epoch: Number(put.header.revision) } };
}
