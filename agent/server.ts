import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { BpfleetError, toServiceError } from '../common/errors.js';
import { malformedRequest, tolerantService } from '../common/grpc-malformed.js';
import { bounded, FIELD_BYTES } from '../common/limits.js';
import type { Logger } from '../common/log.js';
import { withServerSpan } from '../common/otel-grpc.js';
import { AgentServiceService, type AgentServiceServer, type ApplyRequest, type ApplyResponse, type Intent } from '../proto/gen/bpfleet/v1/agent.js';
import { guardService, type AccessRule, type MethodsOf } from '../common/access.js';
import type { TransportSecurity } from '../common/tls.js';
import type { Reconciler } from './reconciler.js';
import { tracedApply } from './tracing.js';

/** The AgentService definition to serve: a request that does not parse is INVALID_ARGUMENT, not INTERNAL. */
export const agentServiceDefinition = tolerantService(AgentServiceService);

/**
 * Who may call each AgentService method: Apply changes the kernel and answers only the
 * control plane's identity; the read-only methods also answer viewers (and admins).
 */
export const AGENT_ACCESS: Readonly<Record<MethodsOf<AgentServiceServer>, AccessRule>> = {
  apply: { control: true },
  getState: { control: true, role: 'viewer' },
  getApplyHistory: { control: true, role: 'viewer' },
};

/** The AgentService behind its access check (see common/access.ts): the caller is checked before any handler runs. */
export function guardAgentService(handlers: AgentServiceServer, transport: TransportSecurity, log: Logger): AgentServiceServer {
  return guardService(AgentServiceService, handlers, AGENT_ACCESS, transport, log);
}

/** Every string of an intent within its limit (common/limits.ts); throws FIELD_TOO_LONG naming the field. */
function checkIntentFields(intent: Intent): Intent {
  bounded('intent.host', intent.host, FIELD_BYTES.name);
  bounded('intent.attachment', intent.attachment, FIELD_BYTES.attachment);
  bounded('intent.expectedDigest', intent.expectedDigest, FIELD_BYTES.digest);
  bounded('intent.rolloutId', intent.rolloutId, FIELD_BYTES.id);
  bounded('intent.traceparent', intent.traceparent ?? '', FIELD_BYTES.id);
  if (intent.module) {
    bounded('intent.module.name', intent.module.name, FIELD_BYTES.name);
    bounded('intent.module.version', intent.module.version, FIELD_BYTES.version);
    bounded('intent.module.digest', intent.module.digest, FIELD_BYTES.digest);
  }
  return intent;
}

export function agentService(reconciler: Reconciler, log: Logger): AgentServiceServer {
  return {
    apply: (call: ServerUnaryCall<ApplyRequest, ApplyResponse>, callback: sendUnaryData<ApplyResponse>) => {
      let intent: Intent;
      try {
        const malformed = malformedRequest(call.request, 'Apply');
        if (malformed) throw malformed;
        if (!call.request.intent) throw new BpfleetError('INVALID_ARGUMENT', 'NO_INTENT', 'ApplyRequest.intent is missing');
        intent = checkIntentFields(call.request.intent);
      } catch (err) {
        callback(toServiceError(err) as never);
        return;
      }
      const fields = { attachment: intent.attachment, module: `${intent.module?.name}@${intent.module?.version}`, generation: intent.generation, rollout: intent.rolloutId };
      // The log lines are written inside the span, so they carry the rollout's trace id.
      withServerSpan(call, 'bpfleet.v1.AgentService/Apply', () => tracedApply('rpc', reconciler.host, intent, () => reconciler.apply(intent)).then((r) => {
        log.info({ ...fields, changed: r.changed, progId: r.state.progId, loadMs: r.loadMs, swapMs: r.swapMs }, r.changed ? 'applied' : 'already running');
        return r;
      }, (err) => {
        log.warn({ ...fields, reason: err instanceof BpfleetError ? err.reason : 'INTERNAL' }, `apply refused: ${(err as Error).message}`);
        throw err;
      })).then(
        (r) => callback(null, { state: r.state, changed: r.changed, fetchMs: r.fetchMs, loadMs: r.loadMs, swapMs: r.swapMs }),
        (err) => callback(toServiceError(err) as never),
      );
    },
    getState: (_call, callback) => callback(null, reconciler.state()),
    getApplyHistory: (_call, callback) => callback(null, { host: reconciler.host, records: [...reconciler.history] }),
  };
}
