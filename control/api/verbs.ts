import type { ServerUnaryCall } from '@grpc/grpc-js';
import { BpfleetError } from '../../common/errors.js';
import { bounded, FIELD_BYTES } from '../../common/limits.js';
import type { SignaturePolicy } from '../../common/signing.js';
import type { Logger } from '../../common/log.js';
import type {
  AbortRolloutRequest,
  AuditEvent,
  ControlServiceServer,
  GetRolloutHistoryRequest,
  GetRolloutHistoryResponse,
  PauseRolloutRequest,
  PromoteRolloutRequest,
  ResumeRolloutRequest,
  RolloutHistoryEntry,
  RolloutVerbResponse,
  UndoRolloutRequest,
} from '../../proto/gen/bpfleet/v1/control.js';
import { RolloutVerb, type Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import type { ModuleRegistry } from '../../common/etcd/modules.js';
import { applyRequest, pendingRequests } from '../rollout/requests.js';
import { undoSpec } from '../rollout/undo.js';
import { emptyStatus, isFinal, verbName } from '../rollout/vocabulary.js';
import type { AuditEntry, AuditLog } from '../store/audit.js';
import type { RequestStore } from '../store/requests.js';
import type { RetiredVersions } from '../store/retired.js';
import type { RolloutStore } from '../store/rollouts.js';
import { actorOf, unary } from './handler.js';
import { requireId, startRollout } from './rollouts.js';

export interface VerbDeps {
  /** The fleet-wide signature policy, which an undo's new rollout meets too. */
  signatures?: SignaturePolicy;
  rollouts: RolloutStore;
  retired: RetiredVersions;
  requests: RequestStore;
  modules: ModuleRegistry;
  audit: AuditLog;
  log: Logger;
  clock: () => Date;
}

type VerbCall = ServerUnaryCall<PauseRolloutRequest | ResumeRolloutRequest | PromoteRolloutRequest | AbortRolloutRequest, RolloutVerbResponse>;

type VerbHandlers = Pick<ControlServiceServer, 'pauseRollout' | 'resumeRollout' | 'promoteRollout' | 'abortRollout' | 'undoRollout' | 'getRolloutHistory'>;

// Audit actions that are the controller talking to itself, not something a person did.
const CONTROLLER_ACTIONS = new Set(['rollout.transition']);

/**
 * The operator verbs (pause, resume, promote, abort), undo and history. For a verb the API
 * only records a request (and audits it); the leading controller acts on it, so a verb
 * works on whichever replica receives it and survives a leader change between the request
 * and the act. Undo starts a new rollout back to the version the original replaced.
 */
export function rolloutVerbs(deps: VerbDeps): VerbHandlers {
  const { log } = deps;

  async function request(call: VerbCall, verb: RolloutVerb): Promise<RolloutVerbResponse> {
    // Every field is checked before anything is read: a bad request costs etcd nothing.
    const id = requireId(call.request.id);
    const reason = bounded('reason', call.request.reason, FIELD_BYTES.reason);
    const actor = actorOf(call);
    const rollout = await deps.rollouts.require(id);
    const now = deps.clock();
    const draft = { verb, actor, at: now.toISOString(), reason };
    // Judged against the rollout as the controller will see it: after the requests it has
    // not acted on yet. A request it would ignore is refused here, with its words.
    const recorded = await deps.requests.append(id, draft, (existing) => {
      const effective = structuredClone(rollout);
      for (const r of pendingRequests(effective.status, existing)) applyRequest(effective, r, now.getTime());
      const outcome = applyRequest(effective, { ...draft, seq: Number.MAX_SAFE_INTEGER }, now.getTime());
      if (outcome.kind === 'refused') throw new BpfleetError('FAILED_PRECONDITION', outcome.reason, `cannot ${verbName(verb)}: ${outcome.why}`);
      return outcome.kind === 'applied';
    });
    if (recorded) {
      await deps.audit.record(draft.actor, `rollout.${verbName(verb)}`, id, { seq: recorded.seq, ...(draft.reason ? { reason: draft.reason } : {}) });
    }
    return { rollout, request: recorded ?? undefined };
  }

  return {
    pauseRollout: unary(log, 'PauseRollout', (call) => request(call, RolloutVerb.ROLLOUT_VERB_PAUSE)),
    resumeRollout: unary(log, 'ResumeRollout', (call) => request(call, RolloutVerb.ROLLOUT_VERB_RESUME)),
    promoteRollout: unary(log, 'PromoteRollout', (call) => request(call, RolloutVerb.ROLLOUT_VERB_PROMOTE)),
    abortRollout: unary(log, 'AbortRollout', (call) => request(call, RolloutVerb.ROLLOUT_VERB_ABORT)),

    undoRollout: unary(log, 'UndoRollout', async (call: ServerUnaryCall<UndoRolloutRequest, Rollout>) => {
      const id = requireId(call.request.id);
      bounded('reason', call.request.reason, FIELD_BYTES.reason);
      const original = await deps.rollouts.require(id);
      const spec = undoSpec(original, await deps.rollouts.list());
      const actor = actorOf(call);
      const rollout = await startRollout(deps, spec, actor, id);
      const reason = call.request.reason ? { reason: call.request.reason } : {};
      await deps.audit.record(actor, 'rollout.undo', id, { rollout: rollout.id, version: spec.version, ...reason });
      await deps.audit.record(actor, 'rollout.create', rollout.id, { module: `${spec.module}@${spec.version}`, attachment: spec.attachment, undoOf: id, ...reason });
      return rollout;
    }),

    getRolloutHistory: unary(log, 'GetRolloutHistory', async (call: ServerUnaryCall<GetRolloutHistoryRequest, GetRolloutHistoryResponse>) => {
      const module = bounded('module', call.request.module, FIELD_BYTES.name);
      const [all, audit] = await Promise.all([deps.rollouts.list(), deps.audit.list()]);
      const rollouts = all.filter((r) => !module || r.spec?.module === module);
      if (module && rollouts.length === 0 && (await deps.modules.list(module)).length === 0) {
        throw new BpfleetError('NOT_FOUND', 'MODULE_NOT_FOUND', `module ${module} not found: no version of it was ever pushed`);
      }
      const byTarget = new Map<string, AuditEvent[]>();
      for (const e of audit) {
        if (CONTROLLER_ACTIONS.has(e.action)) continue;
        byTarget.set(e.target, [...(byTarget.get(e.target) ?? []), auditEvent(e)]);
      }
      return { entries: rollouts.map((r) => historyEntry(r, byTarget.get(r.id) ?? [])) };
    }),
  };
}

function auditEvent(e: AuditEntry): AuditEvent {
  const detail = Object.entries(e.detail ?? {}).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
  return { at: e.at, actor: e.actor, action: e.action, detail };
}

function historyEntry(r: Rollout, events: AuditEvent[]): RolloutHistoryEntry {
  const spec = r.spec!;
  const status = r.status ?? emptyStatus();
  const from = [...new Set(status.hosts.filter((h) => h.previousDigest !== status.digest).map((h) => h.previousVersion))];
  return {
    id: r.id, module: spec.module, version: spec.version, attachment: spec.attachment,
    fromVersions: from, phase: status.phase, message: status.message,
    createdAt: r.createdAt, createdBy: r.createdBy,
    finishedAt: isFinal(r) ? status.updatedAt : '', undoOf: r.undoOf, events,
  };
}
