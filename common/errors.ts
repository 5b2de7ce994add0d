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

export function toServiceError(err: unknown): Partial<ServiceError> {
  const e = err instanceof BpfleetError
    ? err
    : new BpfleetError('INTERNAL', 'INTERNAL', err instanceof Error ? err.message : String(err), undefined, { cause: err });
  const metadata = new Metadata();
  metadata.set(REASON_KEY, e.reason);
  if (e.detail) metadata.set(DETAIL_KEY, Buffer.from(e.detail));
  return { code: GrpcStatus[e.code], details: e.message, metadata };
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
