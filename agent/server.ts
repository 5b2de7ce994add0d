import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { BpfleetError, toServiceError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { AgentServiceServer, ApplyRequest, ApplyResponse } from '../proto/gen/bpfleet/v1/agent.js';
import type { Reconciler } from './reconciler.js';

export function agentService(reconciler: Reconciler, log: Logger): AgentServiceServer {
  return {
    apply: (call: ServerUnaryCall<ApplyRequest, ApplyResponse>, callback: sendUnaryData<ApplyResponse>) => {
      const intent = call.request.intent;
      if (!intent) {
        callback(toServiceError(new BpfleetError('INVALID_ARGUMENT', 'NO_INTENT', 'ApplyRequest.intent is missing')) as never);
        return;
      }
      const fields = { attachment: intent.attachment, module: `${intent.module?.name}@${intent.module?.version}`, generation: intent.generation, rollout: intent.rolloutId };
      reconciler.apply(intent).then((r) => {
        log.info({ ...fields, changed: r.changed, progId: r.state.progId, loadMs: r.loadMs, swapMs: r.swapMs }, r.changed ? 'applied' : 'already running');
        callback(null, { state: r.state, changed: r.changed, fetchMs: r.fetchMs, loadMs: r.loadMs, swapMs: r.swapMs });
      }, (err) => {
        log.warn({ ...fields, reason: err instanceof BpfleetError ? err.reason : 'INTERNAL' }, `apply refused: ${(err as Error).message}`);
        callback(toServiceError(err) as never);
      });
    },
    getState: (_call, callback) => callback(null, reconciler.state()),
  };
}
