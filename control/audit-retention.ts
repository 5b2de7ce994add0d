import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../common/log.js';
import type { Leadership } from './leader.js';
import { AUDIT_RETENTION, type AuditLog, type AuditRetention } from './store/audit.js';

/** Between two prunes of the audit log by the leader (ms). */
export const AUDIT_PRUNE_EVERY_MS = 60_000;

/**
 * The leader's audit retention: prunes the audit log (AuditLog.prune) at once and then
 * every `everyMs` until `leadership.lost` aborts. A failed round (etcd unreachable) is
 * logged and the next round tries again; a lost fence ends the loop. Resolves when it ends.
 */
export async function pruneAuditWhileLeading(
  audit: AuditLog, leadership: Leadership, log: Logger,
  retention: AuditRetention = AUDIT_RETENTION, everyMs = AUDIT_PRUNE_EVERY_MS,
): Promise<void> {
  const { lost } = leadership;
  while (!lost.aborted) {
    try {
      const deleted = await audit.prune(leadership.fence, retention);
      if (deleted) log.info({ deleted, ...retention }, 'audit log pruned');
    } catch (err) {
      if (lost.aborted) return;
      log.warn({ err }, 'audit log prune failed; trying again next round');
    }
    await sleep(everyMs, undefined, { signal: lost }).catch(() => undefined);
  }
}
