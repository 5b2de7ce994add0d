/**
 * Trace context over gRPC: W3C traceparent/tracestate in call metadata, a CLIENT span per
 * outgoing call and a SERVER span per handled call, named and attributed after the OTel RPC
 * semantic conventions ("bpfleet.v1.AgentService/Apply").
 *
 * Propagation is explicit rather than @opentelemetry/instrumentation-grpc. That
 * instrumentation does work for grpc-js under tsx on Node 20 (tried with 0.223.0,
 * import-in-the-middle 3.6, tsx 4.23, Node 20.20: with the loader hook registered by a preload
 * given to --import, client and server spans appeared and were linked, unary and
 * server-streaming, with tsx imported before or after the preload). It was turned down because:
 *  - it works only in processes started with the preload flag; without it (a systemd unit, an
 *    e2e spawn, the npm test script) nothing fails and gRPC simply goes untraced;
 *  - the loader hook runs in a worker thread and wraps modules as they load, which cost about
 *    0.5 s of start-up per process here: every CLI command would pay it;
 *  - the grpc-js interceptor API is all this needs, and behaves the same under tsx, plain node
 *    and node:test, so otel.test.ts exercises the exact code production runs.
 *
 * Clients: `new AgentServiceClient(addr, creds, { interceptors: [tracingInterceptor] })`.
 * Servers: run each handler's work in `withServerSpan(call, 'bpfleet.v1.AgentService/Apply', ...)`.
 */
import {
  InterceptingCall,
  ListenerBuilder,
  RequesterBuilder,
  status as GrpcStatus,
  type Interceptor,
  type Metadata,
} from '@grpc/grpc-js';
import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Span,
  type TextMapGetter,
  type TextMapSetter,
} from '@opentelemetry/api';
import {
  ATTR_ERROR_TYPE,
  ATTR_RPC_METHOD,
  ATTR_RPC_STATUS_CODE,
  ATTR_RPC_SYSTEM_NAME,
  RPC_SYSTEM_NAME_VALUE_GRPC,
} from '@opentelemetry/semantic-conventions';
import { BpfleetError } from './errors.js';
import { INSTRUMENTATION_SCOPE } from './spans.js';

const metadataSetter: TextMapSetter<Metadata> = {
  set: (metadata, key, value) => metadata.set(key, value),
};

const metadataGetter: TextMapGetter<Metadata> = {
  keys: (metadata) => Object.keys(metadata.getMap()),
  get: (metadata, key) => {
    const value = metadata.get(key)[0];
    return typeof value === 'string' && value !== '' ? value : undefined;
  },
};

// The semantic conventions' list of codes that mean the server failed; the others
// (NOT_FOUND, INVALID_ARGUMENT, ...) are the caller's problem and leave a server span unset.
const SERVER_ERROR_CODES = new Set<GrpcStatus>([
  GrpcStatus.UNKNOWN,
  GrpcStatus.DEADLINE_EXCEEDED,
  GrpcStatus.UNIMPLEMENTED,
  GrpcStatus.INTERNAL,
  GrpcStatus.UNAVAILABLE,
  GrpcStatus.DATA_LOSS,
]);

/** grpc-js client interceptor: a CLIENT span around the call, its context in the metadata. */
export const tracingInterceptor: Interceptor = (options, nextCall) => {
  const method = options.method_definition.path.replace(/^\//, '');
  const callerContext = context.active();
  const span = trace.getTracer(INSTRUMENTATION_SCOPE).startSpan(method, {
    kind: SpanKind.CLIENT,
    attributes: { [ATTR_RPC_SYSTEM_NAME]: RPC_SYSTEM_NAME_VALUE_GRPC, [ATTR_RPC_METHOD]: method },
  }, callerContext);
  const spanContext = trace.setSpan(callerContext, span);
  let ended = false;
  // Responses arrive from http2 events whose async context is not the caller's: running the
  // listeners in the caller's context keeps its trace ids on whatever the callbacks log.
  const listener = new ListenerBuilder()
    .withOnReceiveMessage((message, next) => context.with(callerContext, () => next(message)))
    .withOnReceiveStatus((status, next) => {
      if (!ended) endRpcSpan(span, status.code, status.details, true);
      ended = true;
      context.with(callerContext, () => next(status));
    })
    .build();
  const requester = new RequesterBuilder()
    .withStart((metadata, _listener, next) => {
      propagation.inject(spanContext, metadata, metadataSetter);
      next(metadata, listener);
    })
    // A caller that cancels (a watch it has seen enough of) may exit before grpc-js reports
    // the CANCELLED status: end the span now, or it is never exported. Not an error: the
    // caller wanted it.
    .withCancel((next) => {
      if (!ended) endRpcSpan(span, GrpcStatus.CANCELLED, 'cancelled by the caller', false);
      ended = true;
      next();
    })
    .build();
  return new InterceptingCall(nextCall(options), requester);
};

/**
 * Runs a server handler's work as a SERVER span whose parent is the caller's span (from the
 * call metadata), with that span active for everything `fn` does. The span ends when `fn`
 * settles; a rejection is recorded with the gRPC status it will be reported as and rethrown.
 *
 * @param name the full RPC method, "bpfleet.v1.AgentService/Apply"
 */
export async function withServerSpan<T>(
  call: { readonly metadata: Metadata },
  name: string,
  fn: (span: Span) => T | Promise<T>,
): Promise<T> {
  // From ROOT, not context.active(): grpc-js calls handlers from socket events, and whatever
  // context those happen to carry is unrelated to this request.
  const parent = propagation.extract(ROOT_CONTEXT, call.metadata, metadataGetter);
  const span = trace.getTracer(INSTRUMENTATION_SCOPE).startSpan(name, {
    kind: SpanKind.SERVER,
    attributes: { [ATTR_RPC_SYSTEM_NAME]: RPC_SYSTEM_NAME_VALUE_GRPC, [ATTR_RPC_METHOD]: name },
  }, parent);
  try {
    const result = await context.with(trace.setSpan(parent, span), () => fn(span));
    endRpcSpan(span, GrpcStatus.OK, undefined, false);
    return result;
  } catch (err) {
    span.recordException(err instanceof Error ? err : String(err));
    endRpcSpan(span, statusOf(err), err instanceof Error ? err.message : String(err), false);
    throw err;
  }
}

/** The status errors.ts' toServiceError reports `err` as. */
function statusOf(err: unknown): GrpcStatus {
  return err instanceof BpfleetError ? GrpcStatus[err.code] : GrpcStatus.INTERNAL;
}

/** `client`: any non-OK status fails the span, as for a call that did not get what it asked. */
function endRpcSpan(span: Span, code: GrpcStatus, message: string | undefined, client: boolean): void {
  const name = GrpcStatus[code] ?? String(code);
  span.setAttribute(ATTR_RPC_STATUS_CODE, name);
  if (code !== GrpcStatus.OK && (client || SERVER_ERROR_CODES.has(code))) {
    span.setAttribute(ATTR_ERROR_TYPE, name);
    span.setStatus({ code: SpanStatusCode.ERROR, message });
  }
  span.end();
}
