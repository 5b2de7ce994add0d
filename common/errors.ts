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
  | 'UNAUTHENTICATED'
  | 'UNIMPLEMENTED'
  | 'INTERNAL';

/**
 * Every reason bpfleet gives for an error, one word each: the machine-readable half of an
 * error that tests and pipelines match on (sent as `bpfleet-reason` metadata). One list, so
 * one condition has one name everywhere.
 */
export const ERROR_REASONS = [
  // Requests: input that is malformed, missing or too large.
  'USAGE', 'MISSING_ID', 'INVALID_SPEC', 'INVALID_MANIFEST', 'BAD_MANIFEST', 'BAD_ATTACHMENT',
  'BAD_HOOK', 'BAD_DIGEST', 'BAD_NETNS', 'EMPTY_OBJECT', 'OBJECT_TOO_LARGE', 'TOO_MANY_REQUESTS',
  'FORBIDDEN_TARGET', 'OTLP_PROTOCOL', 'FIELD_TOO_LONG', 'MALFORMED_REQUEST', 'MALFORMED_VALUE',
  'BAD_PAGE_TOKEN', 'BAD_PAGE_SIZE', 'BAD_PHASE',
  // Telemetry reports the control plane drops.
  'UNDECODABLE_REPORT', 'INVALID_REPORT', 'HOST_MISMATCH', 'FUTURE_TIMESTAMP',
  // Module objects: what the ELF gate, the verifier and the manifest checks refuse.
  'NOT_ELF', 'NOT_BPF_ELF', 'BAD_OBJECT', 'NO_PROGRAM', 'WRONG_HOOK', 'NO_MAP', 'MAP_INCOMPATIBLE', 'SAME_OBJECT_OTHER_PROGRAM',
  'VERIFIER_REJECTED', 'LOAD_FAILED', 'DIGEST_MISMATCH', 'REGISTRY_MISMATCH', 'ARTIFACT_MISSING',
  // Signatures and keys.
  'UNSIGNED', 'BAD_SIGNATURE', 'BAD_SIGNATURE_FILE', 'STALE_SIGNATURE', 'UNTRUSTED_KEY', 'BAD_KEY',
  'BAD_TRUSTED_KEYS', 'KEY_EXISTS',
  // Things named that do not exist, or exist already.
  'MODULE_NOT_FOUND', 'ROLLOUT_NOT_FOUND', 'UNKNOWN_HOST', 'NO_MODULE', 'NO_INTENT', 'NO_INTERFACE',
  'VERSION_EXISTS', 'ROLLOUT_ACTIVE',
  // Rollouts and operator verbs.
  'ROLLOUT_FINISHED', 'ROLLING_BACK', 'NOT_PAUSED', 'UNKNOWN_VERB', 'NOTHING_TO_UNDO',
  'NO_PREVIOUS_VERSION', 'MIXED_PREVIOUS_VERSIONS', 'NO_BASELINE', 'NO_PROGRAM_FOR_HOOK',
  // Day-2 verbs on hosts and module versions.
  'HOST_IN_ROLLOUT', 'HOST_NOT_FOUND', 'BAD_HOST', 'VERSION_IN_USE', 'VERSION_RETIRED',
  // Agents: intents refused, fencing, drift.
  'WRONG_HOST', 'HOOK_UNSUPPORTED', 'STALE_EPOCH', 'STALE_GENERATION', 'SUPERSEDED', 'DUPLICATE_INTENT',
  'DRIFT', 'CONTENDED', 'HOST_GONE', 'TELEMETRY_RUNNING', 'APPLY_QUEUE_FULL',
  // The kernel.
  'ATTACH_FAILED', 'SWAP_FAILED', 'LOST_LINK', 'KERNEL', 'CLOSED', 'MTU_TOO_LARGE',
  // Daemon configuration files.
  'CONFIG_INVALID', 'CONFIG_UNREADABLE', 'CONFIG_NOT_WIRED',
  // The fleet PKI.
  'CA_EXISTS', 'NO_CA', 'BAD_CA', 'CERTIFICATE_EXISTS', 'FOREIGN_CERTIFICATE',
  'INVALID_CERTIFICATE_REQUEST', 'ROTATION_UNFINISHED', 'CANNOT_WRITE',
  // Transport security and access: who a peer is and what it may do.
  'TLS_CONFIG', 'INSECURE_NOT_CHOSEN', 'NO_IDENTITY', 'IDENTITY_MISMATCH', 'ROLE_REQUIRED', 'CONTROL_PLANE_ONLY',
  'EPOCH_AHEAD_OF_LEADER',
  // The control plane's own state.
  'NOT_LEADER', 'STORE_UNAVAILABLE', 'INTERNAL',
] as const;

/** One reason from ERROR_REASONS, or an error class's own name when nothing more is known. */
export type ErrorReason = (typeof ERROR_REASONS)[number] | ErrorCode;

const KNOWN_REASONS: ReadonlySet<string> = new Set<string>(ERROR_REASONS);

/**
 * Every error bpfleet reports on purpose. `reason` is a stable machine-readable word
 * (NOT_BPF_ELF, VERIFIER_REJECTED, DRIFT, ...) that tests and pipelines can match on;
 * `detail` carries long text such as a verifier log.
 */
export class BpfleetError extends Error {
  override readonly name = 'BpfleetError';
  constructor(
    readonly code: ErrorCode,
    readonly reason: ErrorReason,
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
  // A reason this client does not know (a newer server's) falls back to the error class.
  const sent = String(se.metadata?.get(REASON_KEY)[0] ?? code);
  const reason: ErrorReason = KNOWN_REASONS.has(sent) ? (sent as ErrorReason) : code;
  const detailRaw = se.metadata?.get(DETAIL_KEY)[0];
  const detail = detailRaw === undefined ? undefined : Buffer.isBuffer(detailRaw) ? detailRaw.toString() : String(detailRaw);
  return new BpfleetError(code, reason, se.details || se.message || code, detail, { cause: err });
}
