/**
 * What every ControlService handler shares: who may call it (checked before it runs), the
 * span around it, who is calling, and the one mapping from a thrown error to the gRPC status the client sees.
 */
import type { sendUnaryData, ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';
import { GRPCDeadlineExceededError, GRPCUnavailableError } from 'etcd3';
import { BpfleetError, toServiceError } from '../../common/errors.js';
import { malformedRequest } from '../../common/grpc-malformed.js';
import type { Logger } from '../../common/log.js';
import { withServerSpan } from '../../common/otel-grpc.js';
import { callerOf, guardService, type AccessRule, type MethodsOf } from '../../common/access.js';
import type { TransportSecurity } from '../../common/tls.js';
import { ControlServiceService, type ControlServiceServer } from '../../proto/gen/bpfleet/v1/control.js';

/**
 * Who may call each ControlService method (deny by default: the type makes every method
 * name a rule, and guardService() refuses a method without one). Health and reflection
 * are separate services, open to any peer that completed the mTLS handshake.
 */
export const CONTROL_ACCESS: Readonly<Record<MethodsOf<ControlServiceServer>, AccessRule>> = {
  listModules: { role: 'viewer' },
  getRollout: { role: 'viewer' },
  getRolloutHosts: { role: 'viewer' },
  listRollouts: { role: 'viewer' },
  watchRollout: { role: 'viewer' },
  listHosts: { role: 'viewer' },
  getRolloutHistory: { role: 'viewer' },
  createRollout: { role: 'operator' },
  pauseRollout: { role: 'operator' },
  resumeRollout: { role: 'operator' },
  promoteRollout: { role: 'operator' },
  abortRollout: { role: 'operator' },
  undoRollout: { role: 'operator' },
  drainHost: { role: 'operator' },
  undrainHost: { role: 'operator' },
  decommissionHost: { role: 'operator' },
  pushModule: { role: 'publisher' },
  retireModule: { role: 'publisher' },
};

/**
 * The ControlService behind its access check: every call's caller is identified from its
 * TLS peer certificate and checked against CONTROL_ACCESS before the handler runs.
 */
export function guardControlService(handlers: ControlServiceServer, transport: TransportSecurity, log: Logger, onRefused?: (method: string, err: BpfleetError) => void): ControlServiceServer {
  return guardService(ControlServiceService, handlers, CONTROL_ACCESS, transport, log, onRefused);
}

/** Who is calling, for the audit log: the verified identity's SPIFFE ID (see common/access.ts). */
export function actorOf(call: object): string {
  return callerOf(call).actor;
}

/** Runs `fn` unless the request did not parse (see common/grpc-malformed.ts): then INVALID_ARGUMENT. */
function parsed<C extends { request: unknown }, R>(name: string, call: C, fn: (call: C) => Promise<R>): Promise<R> {
  const malformed = malformedRequest(call.request, name);
  return malformed ? Promise.reject(malformed) : fn(call);
}

/** etcd out of reach is UNAVAILABLE ("try again, maybe another replica"), not a bug of ours. */
function storeUnreachable(err: unknown): unknown {
  const unreachable = err instanceof GRPCUnavailableError || err instanceof GRPCDeadlineExceededError || (err as { isBrokenCircuitError?: boolean } | null)?.isBrokenCircuitError === true;
  return unreachable ? new BpfleetError('UNAVAILABLE', 'STORE_UNAVAILABLE', `etcd is unreachable: ${(err as Error).message}`, undefined, { cause: err }) : err;
}

/**
 * A unary handler from `fn`, run in a server span named bpfleet.v1.ControlService/`name`.
 * A BpfleetError goes to the client with its code and reason; etcd out of reach becomes
 * UNAVAILABLE/STORE_UNAVAILABLE; anything else is INTERNAL. INTERNAL and unexpected
 * errors are logged, errors the client caused are not.
 */
export function unary<Req, Res>(log: Logger, name: string, fn: (call: ServerUnaryCall<Req, Res>) => Promise<Res>) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    withServerSpan(call, `bpfleet.v1.ControlService/${name}`, () => parsed(name, call, fn)).then((res) => callback(null, res), (thrown) => {
      const err = storeUnreachable(thrown);
      if (!(err instanceof BpfleetError) || err.code === 'INTERNAL') log.error({ err, rpc: name }, 'request failed');
      callback(toServiceError(err) as never);
    });
  };
}

/**
 * A server-streaming handler from `fn`, run in a server span like unary(). When `fn`
 * fails, the stream ends with the error's status (mapped as in unary()) unless the client
 * already cancelled it.
 */
export function serverStream<Req, Res>(name: string, fn: (call: ServerWritableStream<Req, Res>) => Promise<void>) {
  return (call: ServerWritableStream<Req, Res>) => {
    void withServerSpan(call, `bpfleet.v1.ControlService/${name}`, () => parsed(name, call, fn)).catch((err) => {
      if (!call.cancelled) failStream(call, err);
    });
  };
}

/**
 * Ends a server stream with the error's status. Not call.destroy(): grpc-js sends the status
 * from the stream's 'error' handler, and a destroyed stream never gets to send it, so the
 * client would wait for ever.
 */
export function failStream(call: ServerWritableStream<unknown, unknown>, err: unknown): void {
  call.emit('error', Object.assign(new Error(), toServiceError(storeUnreachable(err))));
}
