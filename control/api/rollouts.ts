import { randomBytes } from 'node:crypto';
import type { ServerWritableStream } from '@grpc/grpc-js';
import type { Etcd3 } from 'etcd3';
import { hookKind, hookName, parseAttachment } from '../../common/attachment.js';
import { enforceSignaturePolicy, type SignaturePolicy } from '../../common/signing.js';
import { BpfleetError } from '../../common/errors.js';
import { bounded, FIELD_BYTES } from '../../common/limits.js';
import { keys } from '../../common/keys.js';
import type { Logger } from '../../common/log.js';
import type { ControlServiceServer } from '../../proto/gen/bpfleet/v1/control.js';
import type { ProgramSpec } from '../../proto/gen/bpfleet/v1/module.js';
import type { Rollout, RolloutSpec } from '../../proto/gen/bpfleet/v1/rollout.js';
import { checkRolloutSpec } from '../rollout/spec.js';
import type { AuditLog } from '../store/audit.js';
import type { HostDirectory } from '../../common/etcd/hosts.js';
import type { ModuleRegistry } from '../../common/etcd/modules.js';
import { watchPrefix } from '../../common/etcd/watch.js';
import { emptyStatus, isFinal } from '../rollout/vocabulary.js';
import type { RolloutStore } from '../store/rollouts.js';
import { creationTraceparent } from '../tracing.js';
import { actorOf, serverStream, unary } from './handler.js';

export interface RolloutDeps {
  etcd: Etcd3;
  rollouts: RolloutStore;
  modules: ModuleRegistry;
  hosts: HostDirectory;
  audit: AuditLog;
  log: Logger;
  clock: () => Date;
  /** The fleet-wide signature policy: a rollout of a module it refuses is never created. */
  signatures?: SignaturePolicy;
}

type RolloutHandlers = Pick<ControlServiceServer, 'createRollout' | 'getRollout' | 'listRollouts' | 'watchRollout' | 'listHosts'>;

/** A request's rollout id: present (MISSING_ID) and at most FIELD_BYTES.id (FIELD_TOO_LONG). */
export function requireId(id: string): string {
  if (!id) throw new BpfleetError('INVALID_ARGUMENT', 'MISSING_ID', 'a rollout id is required');
  return bounded('id', id, FIELD_BYTES.id);
}

/**
 * Every host would refuse a module without a program for the attachment's hook: refuse the
 * rollout up front, naming the hook and the programs the module has.
 */
export function requireProgramFor(attachment: string, module: string, version: string, programs: readonly ProgramSpec[]): void {
  const { hook } = parseAttachment(attachment);
  if (programs.some((p) => p.hook === hookKind(hook))) return;
  const has = programs.map((p) => `${p.name} (${hookName(p.hook)})`).join(', ') || 'none';
  throw new BpfleetError('FAILED_PRECONDITION', 'NO_PROGRAM_FOR_HOOK', `${module}@${version} has no ${hook} program for ${attachment}; its programs: ${has}`);
}

function newRolloutId(module: string, now: Date): string {
  const stamp = now.toISOString().replace(/[-:T]/g, '').slice(2, 14);
  return `${module}-${stamp}-${randomBytes(2).toString('hex')}`;
}

/**
 * Stores a new rollout of `spec` (already checked) on behalf of `actor`; `undoOf` names
 * the rollout it undoes, '' for none. Its id is `<module>-<yymmddHHMMSS>-<4 hex>`; its
 * traceparent is the current request's span, so the controller's passes join its trace.
 * It is stored with an empty status, phase PENDING: the controller plans it from there.
 *
 * Errors: MODULE_NOT_FOUND when the version was never pushed; FAILED_PRECONDITION/
 * NO_PROGRAM_FOR_HOOK when the module has no program for the attachment's hook;
 * ROLLOUT_ACTIVE when another rollout of the module holds the attachment; PERMISSION_DENIED
 * UNSIGNED, UNTRUSTED_KEY or BAD_SIGNATURE when the fleet's signature policy refuses the
 * module (before any host is touched: nothing is stored).
 */
export async function startRollout(deps: Pick<RolloutDeps, 'rollouts' | 'modules' | 'clock' | 'signatures'>, spec: RolloutSpec, actor: string, undoOf = ''): Promise<Rollout> {
  const module = await deps.modules.require(spec.module, spec.version);
  requireProgramFor(spec.attachment, spec.module, spec.version, module.manifest?.programs ?? []);
  if (deps.signatures) enforceSignaturePolicy(module, deps.signatures, 'the fleet');
  const now = deps.clock();
  const rollout: Rollout = {
    id: newRolloutId(spec.module, now), spec, status: emptyStatus(),
    createdAt: now.toISOString(), createdBy: actor, undoOf,
  };
  rollout.traceparent = creationTraceparent(rollout);
  await deps.rollouts.create(rollout);
  return rollout;
}

/** CreateRollout, GetRollout, ListRollouts, WatchRollout and ListHosts. */
export function rolloutHandlers(deps: RolloutDeps): RolloutHandlers {
  const { log } = deps;
  return {
    createRollout: unary(log, 'CreateRollout', async (call) => {
      const spec = checkRolloutSpec(call.request.spec);
      const rollout = await startRollout(deps, spec, actorOf(call));
      await deps.audit.record(actorOf(call), 'rollout.create', rollout.id, { module: `${spec.module}@${spec.version}`, attachment: spec.attachment });
      return rollout;
    }),

    getRollout: unary(log, 'GetRollout', (call) => deps.rollouts.require(requireId(call.request.id))),

    listRollouts: unary(log, 'ListRollouts', async (call) => ({
      // Records only: per-host progress of every rollout would outgrow a gRPC message in a
      // large fleet. The counts are on each record; GetRollout has the hosts.
      rollouts: (await deps.rollouts.list({ hosts: false })).filter((r) => !bounded('module', call.request.module, FIELD_BYTES.name) || r.spec?.module === call.request.module),
    })),

    listHosts: unary(log, 'ListHosts', async () => ({ hosts: await deps.hosts.listAll() })),

    watchRollout: serverStream('WatchRollout', (call) => watchRollout(deps, call)),
  };
}

/**
 * Streams the rollout now and on every change; ends at a final phase or on cancel. Throws
 * NOT_FOUND for an unknown rollout and what reading etcd throws (the caller fails the stream).
 */
async function watchRollout(deps: RolloutDeps, call: ServerWritableStream<{ id: string }, Rollout>): Promise<void> {
  const id = requireId(call.request.id);
  const key = keys.rollout(id);
  const closed = new AbortController();
  call.on('cancelled', () => closed.abort());
  call.on('close', () => closed.abort());
  let first = true;
  for await (const change of watchPrefix(deps.etcd, key, { signal: closed.signal, log: deps.log })) {
    // Only puts of this very key matter: it is also the prefix of longer ids' keys, and
    // rollout records are never deleted.
    if (change.kind === 'delete' || (change.kind === 'put' && change.key !== key)) continue;
    // The record holds host counts, not hosts (see RolloutStore): each change is read whole,
    // one read after the other, so the stream never goes back in time.
    const rollout = await deps.rollouts.get(id);
    if (first && !rollout) throw new BpfleetError('NOT_FOUND', 'ROLLOUT_NOT_FOUND', `rollout ${id} not found`);
    first = false;
    if (!rollout || closed.signal.aborted || call.cancelled) continue;
    call.write(rollout);
    if (isFinal(rollout)) {
      call.end();
      return;
    }
  }
}
