import { status as GrpcStatus, Metadata, type ServiceError } from '@grpc/grpc-js';

/** Error classes as gRPC status names: the one mapping to the wire lives below. */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  | 'ABORTED'
  | 'UNAVAILABLE'
  | 'DEADLINE_EXCEEDED'
  | 'PERMISSION_DENIED'
  | 'UNIMPLEMENTED'
  | 'INTERNAL';

/**
 * Every error bpfleet reports on purpose. `reason` is a stable machine-readable word
 * (NOT_BPF_ELF, VERIFIER_REJECTED, DRIFT, ...) that tests and pipelines can match on;
 * `detail` carries long text such as a verifier log.
 */
export class BpfleetError extends Error {
  override readonly name = 'BpfleetError';
  constructor(
    readonly code: ErrorCode,
    readonly reason: string,
    message: string,
    readonly detail?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const REASON_KEY = 'bpfleet-reason';
const DETAIL_KEY = 'bpfleet-detail-bin';

/**
 * What of an error goes on the wire: gRPC sends the message and metadata as HTTP/2 headers,
 * and a header list past the peer's limit turns the status into RESOURCE_EXHAUSTED or
 * INTERNAL. Messages quote input through echo() (common/limits.ts) and stay far shorter;
 * these caps are the last line. A detail keeps its end: a verifier log's reason is there.
 */
export const WIRE_MESSAGE_CHARS = 2048;
export const WIRE_DETAIL_BYTES = 16 * 1024;

/** The status a client gets for `err`: message and detail cut to WIRE_MESSAGE_CHARS and WIRE_DETAIL_BYTES. */
export function toServiceError(err: unknown): Partial<ServiceError> {
  const e = err instanceof BpfleetError
    ? err
    : new BpfleetError('INTERNAL', 'INTERNAL', err instanceof Error ? err.message : String(err), undefined, { cause: err });
  const metadata = new Metadata();
  metadata.set(REASON_KEY, e.reason.slice(0, 64));
  if (e.detail) {
    const detail = Buffer.from(e.detail);
    metadata.set(DETAIL_KEY, detail.length > WIRE_DETAIL_BYTES ? detail.subarray(detail.length - WIRE_DETAIL_BYTES) : detail);
  }
  const details = e.message.length > WIRE_MESSAGE_CHARS ? `${e.message.slice(0, WIRE_MESSAGE_CHARS)}… (cut at ${WIRE_MESSAGE_CHARS} characters)` : e.message;
  return { code: GrpcStatus[e.code], details, metadata };
}

/** Turns a gRPC client error back into the BpfleetError the server raised. */
export function fromServiceError(err: unknown): BpfleetError {
  if (err instanceof BpfleetError) return err;
  const se = err as Partial<ServiceError>;
  if (typeof se?.code !== 'number') {
    return new BpfleetError('INTERNAL', 'INTERNAL', err instanceof Error ? err.message : String(err), undefined, { cause: err });
  }
  const code = (GrpcStatus[se.code] ?? 'INTERNAL') as ErrorCode;
  const reason = String(se.metadata?.get(REASON_KEY)[0] ?? code);
  const detailRaw = se.metadata?.get(DETAIL_KEY)[0];
  const detail = detailRaw === undefined ? undefined : Buffer.isBuffer(detailRaw) ? detailRaw.toString() : String(detailRaw);
  return new BpfleetError(code, reason, se.details || se.message || code, detail, { cause: err });
}
