/**
 * Small span helpers shared by control, agent and CLI: child spans that exist only inside a
 * traced request, and a W3C traceparent kept as a plain string where context must outlive
 * a process (a Rollout or an Intent in etcd).
 */
import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type SpanOptions,
} from '@opentelemetry/api';
import { ATTR_ERROR_TYPE } from '@opentelemetry/semantic-conventions';
import { BpfleetError } from './errors.js';

/** Scope of every bpfleet tracer and meter (otel.ts re-exports it). */
export const INSTRUMENTATION_SCOPE = 'bpfleet';

export const tracer = () => trace.getTracer(INSTRUMENTATION_SCOPE);

/**
 * Runs `fn` in a new active span named `name`, ended when `fn` settles; a throw is recorded
 * with the BpfleetError reason as error.type and rethrown. Synchronous `fn` stays synchronous.
 */
export function inSpan<T>(name: string, options: SpanOptions, fn: (span: Span) => T, parent: Context = context.active()): T {
  const span = tracer().startSpan(name, options, parent);
  const fail = (err: unknown): never => {
    recordFailure(span, err);
    span.end();
    throw err;
  };
  let result: T;
  try {
    result = context.with(trace.setSpan(parent, span), () => fn(span));
  } catch (err) {
    return fail(err);
  }
  if (result instanceof Promise) {
    return result.then((value: unknown) => {
      span.end();
      return value;
    }, fail) as T;
  }
  span.end();
  return result;
}

/**
 * Like inSpan, but only inside an active span: work that also runs in the background
 * (adoption at start, a state report) must not start a trace of its own each time.
 */
export function childSpan<T>(name: string, attributes: Attributes, fn: (span: Span | undefined) => T): T {
  if (!trace.getActiveSpan()) return fn(undefined);
  return inSpan(name, { attributes }, fn);
}

// Enough of a verifier log to show the instruction it refused; exporters limit the rest.
const DETAIL_CHARS = 4096;

export function recordFailure(span: Span, err: unknown): void {
  span.recordException(err instanceof Error ? err : String(err));
  span.setAttribute(ATTR_ERROR_TYPE, errorType(err));
  if (err instanceof BpfleetError && err.detail) span.setAttribute('bpfleet.error.detail', err.detail.slice(-DETAIL_CHARS));
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
}

/** The stable reason of a BpfleetError, else the error's class name: a low-cardinality label. */
export function errorType(err: unknown): string {
  if (err instanceof BpfleetError) return err.reason;
  return err instanceof Error ? err.name : 'unknown';
}

/** The W3C traceparent of `ctx`'s span; undefined outside a span or with no propagator. */
export function traceparentOf(ctx: Context = context.active()): string | undefined {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return carrier.traceparent || undefined;
}

/** `base` with the span a traceparent names as remote parent; just `base` for none or junk. */
export function contextOf(traceparent: string | undefined, base: Context = ROOT_CONTEXT): Context {
  return traceparent ? propagation.extract(base, { traceparent }) : base;
}
