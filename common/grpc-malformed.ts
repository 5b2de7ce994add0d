/**
 * Requests that do not parse as their protobuf message. grpc-js answers a request its
 * deserializer throws on with INTERNAL ("Error deserializing request"), which reads as a
 * server bug; the client sent bytes that are not the message, which is INVALID_ARGUMENT.
 * The service definition's deserializers are wrapped to hand the handler a marker instead,
 * and the handler answers it (malformedRequest).
 */
import type { ServiceDefinition } from '@grpc/grpc-js';
import { BpfleetError } from './errors.js';
import { echo } from './limits.js';

const MALFORMED = Symbol('malformed request');

interface Marker {
  [MALFORMED]: string;
}

/** `service` with every request deserializer returning a marker rather than throwing. */
export function tolerantService<S extends ServiceDefinition>(service: S): S {
  const out: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(service)) {
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes);
        } catch (err) {
          return { [MALFORMED]: err instanceof Error ? err.message : String(err) } satisfies Marker;
        }
      },
    };
  }
  return out as S;
}

/** The INVALID_ARGUMENT/MALFORMED_REQUEST error for a request that did not parse, null for one that did. */
export function malformedRequest(request: unknown, rpc: string): BpfleetError | null {
  if (typeof request !== 'object' || request === null || !(MALFORMED in request)) return null;
  return new BpfleetError('INVALID_ARGUMENT', 'MALFORMED_REQUEST', `${rpc}: the request is not a valid protobuf message (${echo((request as Marker)[MALFORMED], 120)})`);
}
