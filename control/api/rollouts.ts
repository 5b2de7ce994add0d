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
import { HostPhase, type Rollout, type RolloutSpec } from '../../proto/gen/bpfleet/v1/rollout.js';
import { checkRolloutSpec } from '../rollout/spec.js';
import type { AuditLog } from '../store/audit.js';
import type { HostDirectory } from '../../common/etcd/hosts.js';
import type { ModuleRegistry } from '../../common/etcd/modules.js';
import { watchPrefix } from '../../common/etcd/watch.js';
import { emptyStatus, HOST_PHASES, isFinal } from '../rollout/vocabulary.js';
import type { RetiredVersions } from '../store/retired.js';
import { HOSTS_PER_MESSAGE, type RolloutStore } from '../store/rollouts.js';
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
  retired: RetiredVersions;
}

type RolloutHandlers = Pick<ControlServiceServer, 'createRollout' | 'getRollout' | 'getRolloutHosts' | 'listRollouts' | 'watchRollout'>;

/** Hosts a GetRolloutHosts page holds when the request names no page size. */
export const DEFAULT_HOSTS_PAGE = 500;
/** The largest GetRolloutHosts page a request may ask for. */
export const MAX_HOSTS_PAGE = 5000;

// A page token is the last host name of the previous page, opaque to clients so the
// encoding can change; "h:" versions it.
const encodePageToken = (host: string): string => Buffer.from(`h:${host}`).toString('base64url');

/** The host name a GetRolloutHosts page token resumes after; BAD_PAGE_TOKEN when it is not one. */
export function decodePageToken(token: string): string | undefined {
  if (!token) return undefined;
  bounded('page_token', token, FIELD_BYTES.id * 2);
  const text = Buffer.from(token, 'base64url').toString();
  const host = text.startsWith('h:') ? text.slice(2) : '';
  if (!host || encodePageToken(host) !== token) {
    throw new BpfleetError('INVALID_ARGUMENT', 'BAD_PAGE_TOKEN', 'page_token is not one GetRolloutHosts returned; start again with an empty token');
  }
  return host;
}

/** A request's page size: 0 means DEFAULT_HOSTS_PAGE; above MAX_HOSTS_PAGE is BAD_PAGE_SIZE. */
export function pageSize(requested: number): number {
  if (requested === 0) return DEFAULT_HOSTS_PAGE;
  if (requested > MAX_HOSTS_PAGE) throw new BpfleetError('INVALID_ARGUMENT', 'BAD_PAGE_SIZE', `page_size ${requested} is over the limit of ${MAX_HOSTS_PAGE}`);
  return requested;
}

/** A request's phase filter: undefined for every phase; BAD_PHASE for a value that is not a host phase. */
export function phaseFilter(phases: readonly HostPhase[]): ReadonlySet<HostPhase> | undefined {
  if (!phases.length) return undefined;
  for (const p of phases) {
    if (!HOST_PHASES.includes(p)) {
      throw new BpfleetError('INVALID_ARGUMENT', 'BAD_PHASE', `phases: ${String(p).slice(0, 40)} is not a host phase; use ${HOST_PHASES.join(', ')}`);
    }
  }
  return new Set(phases);
}

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
 * Errors: FAILED_PRECONDITION/VERSION_RETIRED when the version was retired; MODULE_NOT_FOUND
 * when the version was never pushed; FAILED_PRECONDITION/
 * NO_PROGRAM_FOR_HOOK when the module has no program for the attachment's hook;
 * ROLLOUT_ACTIVE when another rollout of the module holds the attachment; PERMISSION_DENIED
 * UNSIGNED, UNTRUSTED_KEY or BAD_SIGNATURE when the fleet's signature policy refuses the
 * module (before any host is touched: nothing is stored).
 */
export async function startRollout(deps: Pick<RolloutDeps, 'rollouts' | 'modules' | 'clock' | 'signatures' | 'retired'>, spec: RolloutSpec, actor: string, undoOf = ''): Promise<Rollout> {
  const retired = await deps.retired.get(spec.module, spec.version);
  if (retired) throw new BpfleetError('FAILED_PRECONDITION', 'VERSION_RETIRED', `${spec.module}@${spec.version} was retired by ${retired.by} at ${retired.at}; roll out another version`);
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

/** CreateRollout, GetRollout, ListRollouts and WatchRollout. */
export function rolloutHandlers(deps: RolloutDeps): RolloutHandlers {
  const { log } = deps;
  return {
    createRollout: unary(log, 'CreateRollout', async (call) => {
      const spec = checkRolloutSpec(call.request.spec);
      const rollout = await startRollout(deps, spec, actorOf(call));
      await deps.audit.record(actorOf(call), 'rollout.create', rollout.id, { module: `${spec.module}@${spec.version}`, attachment: spec.attachment });
      return rollout;
    }),

    getRollout: unary(log, 'GetRollout', async (call) => {
      const id = requireId(call.request.id);
      const view = await deps.rollouts.view(id);
      if (!view) throw new BpfleetError('NOT_FOUND', 'ROLLOUT_NOT_FOUND', `rollout ${id} not found`);
      return view.rollout;
    }),

    getRolloutHosts: unary(log, 'GetRolloutHosts', async (call) => {
      const id = requireId(call.request.id);
      const limit = pageSize(call.request.pageSize);
      const after = decodePageToken(call.request.pageToken);
      const phases = phaseFilter(call.request.phases);
      const view = await deps.rollouts.view(id, 0);
      if (!view) throw new BpfleetError('NOT_FOUND', 'ROLLOUT_NOT_FOUND', `rollout ${id} not found`);
      const page = await deps.rollouts.hostsPage(id, { limit, after, phases, atRevision: view.revision });
      return { hosts: page.hosts, nextPageToken: page.next === null ? '' : encodePageToken(page.next), hostCounts: view.rollout.status?.hostCounts };
    }),

    listRollouts: unary(log, 'ListRollouts', async (call) => ({
      // Records only: per-host progress of every rollout would outgrow a gRPC message in a
      // large fleet. The counts are on each record; GetRollout has the hosts.
      rollouts: (await deps.rollouts.list({ hosts: false })).filter((r) => !bounded('module', call.request.module, FIELD_BYTES.name) || r.spec?.module === call.request.module),
    })),

    watchRollout: serverStream('WatchRollout', (call) => watchRollout(deps, call)),
  };
}

/**
 * Streams the rollout now and on every change; ends at a final phase or on cancel. The first
 * message is GetRollout's view (at most HOSTS_PER_MESSAGE hosts, the rest counted in
 * hostsOmitted); each later one carries the record and only the hosts whose progress changed
 * since the message before (hostsChangedOnly), HOSTS_PER_MESSAGE at most a message, so
 * nothing the stream sends grows with the fleet. Throws NOT_FOUND for an unknown rollout and
 * what reading etcd throws (the caller fails the stream).
 */
async function watchRollout(deps: RolloutDeps, call: ServerWritableStream<{ id: string }, Rollout>): Promise<void> {
  const id = requireId(call.request.id);
  const key = keys.rollout(id);
  const closed = new AbortController();
  call.on('cancelled', () => closed.abort());
  call.on('close', () => closed.abort());
  // The etcd revision the client's view of the hosts is complete up to.
  let sentUpTo: number | undefined;
  for await (const change of watchPrefix(deps.etcd, key, { signal: closed.signal, log: deps.log })) {
    // Only this very key matters: it is also the prefix of longer ids' keys, and rollout
    // records are never deleted.
    if (change.kind === 'delete' || (change.kind === 'put' && change.key !== key)) continue;
    if (closed.signal.aborted || call.cancelled) return;
    // A reset (the first event, or the watch read again after it was lost) sends the whole
    // view again: changes in between may be gone from etcd's history.
    const messages = change.kind === 'reset' || sentUpTo === undefined
      ? await firstMessage(deps, id, change.revision)
      : await changeMessages(deps, id, sentUpTo + 1, change.revision);
    if (!messages) {
      if (sentUpTo === undefined) throw new BpfleetError('NOT_FOUND', 'ROLLOUT_NOT_FOUND', `rollout ${id} not found`);
      continue;
    }
    sentUpTo = change.revision;
    for (const m of messages) call.write(m);
    if (isFinal(messages[0]!)) {
      call.end();
      return;
    }
  }
}

async function firstMessage(deps: RolloutDeps, id: string, atRevision: number): Promise<Rollout[] | null> {
  const view = await deps.rollouts.view(id, HOSTS_PER_MESSAGE, atRevision);
  return view ? [view.rollout] : null;
}

/** The record as of `atRevision` and the hosts changed from `since`, split into messages of HOSTS_PER_MESSAGE hosts. */
async function changeMessages(deps: RolloutDeps, id: string, since: number, atRevision: number): Promise<Rollout[] | null> {
  const view = await deps.rollouts.view(id, 0, atRevision);
  if (!view) return null;
  const changed = await deps.rollouts.changedHosts(id, since, atRevision);
  const { rollout } = view;
  if (!rollout.status) return [rollout];
  const messages: Rollout[] = [];
  for (let i = 0; i === 0 || i < changed.length; i += HOSTS_PER_MESSAGE) {
    const hosts = changed.slice(i, i + HOSTS_PER_MESSAGE);
    messages.push({ ...rollout, status: { ...rollout.status, hosts, hostsOmitted: 0, hostsChangedOnly: true } });
  }
  return messages;
}
