import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { BpfleetError, toServiceError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { withServerSpan } from '../common/otel-grpc.js';
import { AgentServiceService, type AgentServiceServer, type ApplyRequest, type ApplyResponse } from '../proto/gen/bpfleet/v1/agent.js';
import { guardService, type AccessRule } from '../common/access.js';
import type { TransportSecurity } from '../common/tls.js';
import type { Reconciler } from './reconciler.js';
import { tracedApply } from './tracing.js';

/**
 * Who may call each AgentService method: Apply changes the kernel and answers only the
 * control plane's identity; the read-only methods also answer viewers (and admins).
 */
export const AGENT_ACCESS: Readonly<Record<keyof AgentServiceServer, AccessRule>> = {
  apply: { control: true },
  getState: { control: true, role: 'viewer' },
  getApplyHistory: { control: true, role: 'viewer' },
};

/** The AgentService behind its access check (see common/access.ts): the caller is checked before any handler runs. */
export function guardAgentService(handlers: AgentServiceServer, transport: TransportSecurity, log: Logger): AgentServiceServer {
  return guardService(AgentServiceService, handlers, AGENT_ACCESS, transport, log);
}

export function agentService(reconciler: Reconciler, log: Logger): AgentServiceServer {
  return {
    apply: (call: ServerUnaryCall<ApplyRequest, ApplyResponse>, callback: sendUnaryData<ApplyResponse>) => {
      const intent = call.request.intent;
      if (!intent) {
        callback(toServiceError(new BpfleetError('INVALID_ARGUMENT', 'NO_INTENT', 'ApplyRequest.intent is missing')) as never);
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
