import { randomBytes } from 'node:crypto';
import type { sendUnaryData, ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';
import { GRPCDeadlineExceededError, GRPCUnavailableError, type Etcd3 } from 'etcd3';
import type { ArtifactStore } from '../common/artifacts.js';
import { DIGEST_RE, digestOf } from '../common/digest.js';
import { BpfleetError, toServiceError } from '../common/errors.js';
import { keys } from '../common/keys.js';
import type { Logger } from '../common/log.js';
import { checkManifest, MAX_OBJECT_BYTES } from '../common/manifest.js';
import { withServerSpan } from '../common/otel-grpc.js';
import { checkSignatureFields } from '../common/signing.js';
import { requireBpfElf } from '../agent/dataplane/elf.js';
import type { ControlServiceServer } from '../proto/gen/bpfleet/v1/control.js';
import { Rollout, type RolloutSpec } from '../proto/gen/bpfleet/v1/rollout.js';
import { checkRolloutSpec } from './rollout/spec.js';
import { emptyStatus, isFinal } from './rollout/vocabulary.js';
import type { AuditLog } from './store/audit.js';
import type { HostDirectory } from './store/hosts.js';
import type { ModuleRegistry } from './store/modules.js';
import { RequestStore } from './store/requests.js';
import type { RolloutStore } from './store/rollouts.js';
import { requireId, rolloutVerbs } from './api-verbs.js';
import { creationTraceparent } from './tracing.js';

export interface ApiDeps {
  etcd: Etcd3;
  artifacts: ArtifactStore;
  modules: ModuleRegistry;
  rollouts: RolloutStore;
  hosts: HostDirectory;
  audit: AuditLog;
  log: Logger;
  clock?: () => Date;
  /** Operators' requests on rollouts; by default kept in `etcd`. */
  requests?: RequestStore;
}

/** Who is calling, for the audit log. mTLS identities will replace the header later. */
export function actorOf(call: { metadata: { get(k: string): unknown[] } }): string {
  return String(call.metadata.get('bpfleet-actor')[0] ?? 'anonymous');
}

/** etcd out of reach is UNAVAILABLE ("try again, maybe another replica"), not a bug of ours. */
function storeUnreachable(err: unknown): unknown {
  const unreachable = err instanceof GRPCUnavailableError || err instanceof GRPCDeadlineExceededError || (err as { isBrokenCircuitError?: boolean } | null)?.isBrokenCircuitError === true;
  return unreachable ? new BpfleetError('UNAVAILABLE', 'STORE_UNAVAILABLE', `etcd is unreachable: ${(err as Error).message}`, undefined, { cause: err }) : err;
}

export function unary<Req, Res>(log: Logger, name: string, fn: (call: ServerUnaryCall<Req, Res>) => Promise<Res>) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    withServerSpan(call, `bpfleet.v1.ControlService/${name}`, () => fn(call)).then((res) => callback(null, res), (thrown) => {
      const err = storeUnreachable(thrown);
      if (!(err instanceof BpfleetError) || err.code === 'INTERNAL') log.error({ err, rpc: name }, 'request failed');
      callback(toServiceError(err) as never);
    });
  };
}

export function newRolloutId(module: string, now: Date): string {
  const stamp = now.toISOString().replace(/[-:T]/g, '').slice(2, 14);
  return `${module}-${stamp}-${randomBytes(2).toString('hex')}`;
}

export function controlService(deps: ApiDeps): ControlServiceServer {
  const { log } = deps;
  const clock = deps.clock ?? (() => new Date());
  return {
    pushModule: unary(log, 'PushModule', async (call) => {
      const { manifest, object, digest, signature, keyId } = call.request;
      const m = checkManifest(manifest);
      const what = `${m.name}@${m.version}`;
      if (object.length === 0) throw new BpfleetError('INVALID_ARGUMENT', 'EMPTY_OBJECT', `${what}: the object is empty`);
      if (object.length > MAX_OBJECT_BYTES) throw new BpfleetError('INVALID_ARGUMENT', 'OBJECT_TOO_LARGE', `${what}: ${object.length} bytes is over the ${MAX_OBJECT_BYTES}-byte limit`);
      requireBpfElf(object, what);
      checkSignatureFields(signature, keyId, what);
      const actual = digestOf(object);
      if (digest && !DIGEST_RE.test(digest)) throw new BpfleetError('INVALID_ARGUMENT', 'BAD_DIGEST', `${what}: digest "${digest}" is not sha256:<64 hex>`);
      if (digest && digest !== actual) {
        throw new BpfleetError('INVALID_ARGUMENT', 'DIGEST_MISMATCH', `${what}: object digest is ${actual}, the request said ${digest}`);
      }
      const existing = await deps.modules.get(m.name, m.version);
      if (existing && existing.digest !== actual) {
        throw new BpfleetError('ALREADY_EXISTS', 'VERSION_EXISTS', `module ${what} already exists with digest ${existing.digest}; versions are immutable, push a new version`);
      }
      const stored = await deps.artifacts.put(object);
      const result = await deps.modules.create({
        manifest: m, digest: actual, size: object.length, objectKey: stored.key,
        pushedAt: clock().toISOString(), pushedBy: actorOf(call), signature, keyId,
      });
      if (result.created) await deps.audit.record(actorOf(call), 'module.push', what, { digest: actual });
      return { module: result.module, created: result.created };
    }),

    listModules: unary(log, 'ListModules', async (call) => ({ modules: await deps.modules.list(call.request.name || undefined) })),

    createRollout: unary(log, 'CreateRollout', async (call) => {
      const spec = checkRolloutSpec(call.request.spec);
      await deps.modules.require(spec.module, spec.version);
      const now = clock();
      const rollout: Rollout = {
        id: newRolloutId(spec.module, now), spec, status: emptyStatus(),
        createdAt: now.toISOString(), createdBy: actorOf(call), undoOf: '',
      };
      rollout.traceparent = creationTraceparent(rollout);
      await deps.rollouts.create(rollout);
      await deps.audit.record(actorOf(call), 'rollout.create', rollout.id, { module: `${spec.module}@${spec.version}`, attachment: spec.attachment });
      return rollout;
    }),

    getRollout: unary(log, 'GetRollout', (call) => deps.rollouts.require(requireId(call.request.id))),

    listRollouts: unary(log, 'ListRollouts', async (call) => ({
      // Records only: per-host progress of every rollout would outgrow a gRPC message in a
      // large fleet. The counts are on each record; GetRollout has the hosts.
      rollouts: (await deps.rollouts.list({ hosts: false })).filter((r) => !call.request.module || r.spec?.module === call.request.module),
    })),

    listHosts: unary(log, 'ListHosts', async () => ({ hosts: await deps.hosts.list() })),

    ...rolloutVerbs({ ...deps, requests: deps.requests ?? new RequestStore(deps.etcd), clock }),

    watchRollout: (call: ServerWritableStream<{ id: string }, Rollout>) => {
      void withServerSpan(call, 'bpfleet.v1.ControlService/WatchRollout', () => watchRollout(deps, call)).catch((err) => {
        if (!call.cancelled) failStream(call, err);
      });
    },
  };
}

/**
 * Ends a server stream with the error's status. Not call.destroy(): grpc-js sends the status
 * from the stream's 'error' handler, and a destroyed stream never gets to send it, so the
 * client would wait for ever.
 */
function failStream(call: ServerWritableStream<unknown, unknown>, err: unknown): void {
  call.emit('error', Object.assign(new Error(), toServiceError(storeUnreachable(err))));
}

/** Streams the rollout now and on every change; ends at a final phase or on cancel. */
async function watchRollout(deps: ApiDeps, call: ServerWritableStream<{ id: string }, Rollout>): Promise<void> {
  const id = requireId(call.request.id);
  const key = keys.rollout(id);
  const watcher = await deps.etcd.watch().key(key).create();
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    void watcher.cancel();
  };
  call.on('cancelled', close);
  call.on('close', close);
  const send = (r: Rollout): void => {
    if (closed || call.cancelled) return;
    call.write(r);
    if (isFinal(r)) {
      close();
      call.end();
    }
  };
  const fail = (err: unknown): void => {
    close();
    if (!call.cancelled) failStream(call, err);
  };
  // The record holds host counts, not hosts (see RolloutStore): each change is read whole,
  // one read after the other, so the stream never goes back in time.
  let reads: Promise<void>;
  watcher.on('put', () => {
    reads = reads.then(async () => {
      const r = await deps.rollouts.get(id);
      if (r) send(r);
    }).catch(fail);
  });
  watcher.on('error', fail);
  // Read after the watch exists so no change between the read and the watch is missed.
  const first = deps.rollouts.get(id);
  reads = first.then(() => undefined, () => undefined);
  const current = await first;
  if (!current) {
    close();
    throw new BpfleetError('NOT_FOUND', 'ROLLOUT_NOT_FOUND', `rollout ${id} not found`);
  }
  send(current);
}

export type { RolloutSpec };
