import type { ServerUnaryCall } from '@grpc/grpc-js';
import type { Etcd3 } from 'etcd3';
import type { HostDirectory } from '../../common/etcd/hosts.js';
import { BpfleetError } from '../../common/errors.js';
import { HOST_NAME_RE, keys } from '../../common/keys.js';
import { bounded, echo, FIELD_BYTES } from '../../common/limits.js';
import type { Logger } from '../../common/log.js';
import { DrainState, type ControlServiceServer, type HostDrain, type HostDrainResponse } from '../../proto/gen/bpfleet/v1/control.js';
import { rolloutsHolding } from '../day2/drain-rules.js';
import type { AuditLog } from '../store/audit.js';
import type { DrainStore } from '../store/drains.js';
import type { DesiredStore } from '../store/desired.js';
import { lagsOf, scopeOf } from '../convergence/desired.js';
import { isFinal } from '../rollout/vocabulary.js';
import type { RolloutStore } from '../store/rollouts.js';
import { actorOf, unary } from './handler.js';

export interface HostDeps {
  etcd: Etcd3;
  hosts: HostDirectory;
  drains: DrainStore;
  desired: DesiredStore;
  rollouts: RolloutStore;
  audit: AuditLog;
  log: Logger;
  clock: () => Date;
}

type HostHandlers = Pick<ControlServiceServer, 'listHosts' | 'drainHost' | 'undrainHost' | 'decommissionHost'>;

/** A request's host name: present and a plain host name (INVALID_ARGUMENT/BAD_HOST otherwise). */
export function requireHost(host: string): string {
  if (!host) throw new BpfleetError('INVALID_ARGUMENT', 'BAD_HOST', 'a host name is required');
  if (!HOST_NAME_RE.test(host)) throw new BpfleetError('INVALID_ARGUMENT', 'BAD_HOST', `host ${echo(host)} is not a host name (lowercase letters, digits and dashes, at most 63)`);
  return host;
}

/**
 * ListHosts and the day-2 verbs on a host. Drain and decommission only record the drain
 * (and audit it); the leading controller removes the programs (control/day2/drainer.ts).
 */
export function hostHandlers(deps: HostDeps): HostHandlers {
  const { log } = deps;

  /**
   * Records a drain of the host (a decommission when `decommission`). Refused while an
   * unfinished rollout holds the host: its applies and rollback own the host until it ends.
   */
  async function drain(call: ServerUnaryCall<{ host: string; reason: string }, HostDrainResponse>, decommission: boolean): Promise<HostDrainResponse> {
    const host = requireHost(call.request.host);
    const reason = bounded('reason', call.request.reason, FIELD_BYTES.reason);
    const actor = actorOf(call);
    const registered = await deps.hosts.get(host);
    const existing = await deps.drains.get(host);
    if (!registered && !existing && (await deps.etcd.get(keys.observed(host)).string()) === null) {
      throw new BpfleetError('NOT_FOUND', 'HOST_NOT_FOUND', `host ${host} is not registered and has no recorded state`);
    }
    const verb = decommission ? 'decommission' : 'drain';
    if (existing && (existing.drain.decommission || !decommission)) return { drain: existing.drain, changed: false };
    const holding = rolloutsHolding(host, registered?.labels ?? null, await deps.rollouts.unfinished());
    if (holding.length) {
      throw new BpfleetError('FAILED_PRECONDITION', 'HOST_IN_ROLLOUT',
        `cannot ${verb} ${host}: unfinished rollout ${holding.join(', ')} includes it; wait for it to finish (bpfleet rollout status ${holding[0]}) or abort it, then ${verb}`);
    }
    const record: HostDrain = existing
      ? { ...existing.drain, decommission: true, state: existing.drain.state === DrainState.DRAIN_STATE_DECOMMISSIONED ? existing.drain.state : DrainState.DRAIN_STATE_DRAINING }
      : {
        host, state: DrainState.DRAIN_STATE_DRAINING, requestedBy: actor, requestedAt: deps.clock().toISOString(), reason,
        decommission, message: 'recorded; the leading controller removes its programs', drainedAt: '',
      };
    if (existing) {
      if (!(await deps.drains.replace(record, existing.revision))) {
        throw new BpfleetError('ABORTED', 'CONTENDED', `the drain of ${host} changed while it was being decommissioned; try again`);
      }
    } else {
      const created = await deps.drains.create(record);
      if (!created.created) return { drain: created.drain, changed: false };
    }
    await deps.audit.record(actor, `host.${verb}`, host, reason ? { reason } : undefined);
    return { drain: record, changed: true };
  }

  return {
    listHosts: unary(log, 'ListHosts', async () => {
      const [hosts, drains, records, rollouts] = await Promise.all([deps.hosts.listAll(), deps.drains.list(), deps.desired.list(), deps.rollouts.list({ hosts: false })]);
      // A module+attachment an unfinished rollout owns has its story in that rollout's
      // status: its hosts are on their way to a version that is not desired yet.
      const active = new Set(rollouts.filter((r) => !isFinal(r)).map((r) => scopeOf(r.spec!.module, r.spec!.attachment)));
      const settled = records.filter((d) => !active.has(scopeOf(d.module, d.attachment)));
      // The directory's objects are shared: each answer gets its own copy with the lag.
      // A drained host runs nothing on purpose: it lags behind nothing.
      const drained = new Set(drains.map((d) => d.drain.host));
      return { hosts: hosts.map((h) => ({ ...h, lagging: drained.has(h.name) ? [] : lagsOf(h, settled) })), drains: drains.map((d) => d.drain) };
    }),

    drainHost: unary(log, 'DrainHost', (call) => drain(call, false)),
    decommissionHost: unary(log, 'DecommissionHost', (call) => drain(call, true)),

    undrainHost: unary(log, 'UndrainHost', async (call) => {
      const host = requireHost(call.request.host);
      const reason = bounded('reason', call.request.reason, FIELD_BYTES.reason);
      const removed = await deps.drains.delete(host);
      if (!removed) {
        if (!(await deps.hosts.get(host))) throw new BpfleetError('NOT_FOUND', 'HOST_NOT_FOUND', `host ${host} is neither registered nor drained`);
        return { drain: undefined, changed: false };
      }
      await deps.audit.record(actorOf(call), 'host.undrain', host, reason ? { reason } : undefined);
      return { drain: undefined, changed: true };
    }),
  };
}
