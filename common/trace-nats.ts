/**
 * Trace context over NATS message headers (W3C traceparent/tracestate), by hand: there is no
 * OTel instrumentation for the @nats-io 3.x clients.
 *
 * Publish: `nc.publish(subject, data, { headers: injectHeaders() })`.
 * Consume: `context.with(extractContext(msg.headers), () => handle(msg))`.
 */
import { context, propagation, ROOT_CONTEXT, type Context, type TextMapGetter, type TextMapSetter } from '@opentelemetry/api';
import { headers as natsHeaders, type MsgHdrs } from '@nats-io/transport-node';

const setter: TextMapSetter<MsgHdrs> = {
  set: (hdrs, key, value) => hdrs.set(key, value),
};

// MsgHdrs.get answers "" for an absent header where TextMapGetter promises undefined, which is
// what propagators test for. Case-insensitive because Go clients canonicalize to "Traceparent".
const getter: TextMapGetter<MsgHdrs> = {
  keys: (hdrs) => hdrs.keys(),
  get: (hdrs, key) => hdrs.get(key, 'insensitive') || undefined,
};

/** Adds the context's trace headers to `hdrs` (new headers when omitted) and returns them. */
export function injectHeaders(hdrs: MsgHdrs = natsHeaders(), ctx: Context = context.active()): MsgHdrs {
  propagation.inject(ctx, hdrs, setter);
  return hdrs;
}

/**
 * The context a consumer should handle the message in: `base` plus the publisher's span as
 * remote parent; just `base` when the message carries no (or an empty) trace header.
 * `base` defaults to ROOT because subscription callbacks run from socket events, whose active
 * context belongs to whatever happened to open the connection.
 */
export function extractContext(hdrs: MsgHdrs | undefined, base: Context = ROOT_CONTEXT): Context {
  return hdrs ? propagation.extract(base, hdrs, getter) : base;
}
