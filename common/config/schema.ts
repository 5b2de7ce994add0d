/**
 * The parts of the daemons' config files that bpfleet-agent and bpfleet-control share: etcd,
 * NATS, gRPC TLS, metrics, log level, addresses. Every object is strict (an unknown or
 * misspelt field is refused, not ignored). Limits are stated on each field.
 */
import { z } from 'zod';

/** Longest path accepted (PATH_MAX on Linux). */
const MAX_PATH = 4096;
/** Most etcd endpoints or NATS servers one daemon is given. */
export const MAX_ENDPOINTS = 32;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const filePath = z.string().min(1, 'must not be empty').max(MAX_PATH, `longer than ${MAX_PATH} characters`);

/** "host:port" or "[v6]:port"; port 0 asks the kernel for a free one. */
export const hostPort = z.string().refine(
  (v) => /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):\d{1,5}$/.test(v) && Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535,
  'expected host:port with a port from 0 to 65535, e.g. 127.0.0.1:50051',
);

export const port = z.number().int('must be a whole number').min(0).max(65535);

/** PEM files for TLS: the CA bundle that verifies the peer, and this side's certificate and key. */
export const tlsFiles = z.strictObject({
  ca: filePath,
  cert: filePath.optional(),
  key: filePath.optional(),
}).refine((t) => (t.cert === undefined) === (t.key === undefined), 'cert and key go together: give both or neither');

const endpointList = (what: string, scheme: RegExp, example: string) => z.array(z.string().regex(scheme, `expected ${example}`))
  .min(1, `at least one ${what}`).max(MAX_ENDPOINTS, `at most ${MAX_ENDPOINTS} ${what}s`);

export const etcdSchema = z.strictObject({
  endpoints: endpointList('endpoint', /^https?:\/\/\S+$/, 'http(s)://host:port').default(['http://127.0.0.1:2379']),
  tls: tlsFiles.optional(),
  username: z.string().min(1).max(128).optional(),
  /** Secret: printed redacted. Prefer passwordFile (or env BPFLEET_ETCD_PASSWORD from a secret store). */
  password: z.string().min(1).max(1024).optional(),
  passwordFile: filePath.optional(),
}).refine((e) => !(e.password && e.passwordFile), 'password and passwordFile: give one, not both')
  .refine((e) => Boolean(e.username) === Boolean(e.password || e.passwordFile), 'username needs password or passwordFile, and the reverse');

export const natsSchema = z.strictObject({
  servers: endpointList('server', /^((nats|tls|wss?):\/\/)?\S+:\d{1,5}$/, 'nats://host:port').default(['nats://127.0.0.1:4222']),
  tls: tlsFiles.optional(),
  /** NATS credentials file (JWT + nkey seed), from nsc. */
  credsFile: filePath.optional(),
  /** Secret: printed redacted. */
  token: z.string().min(1).max(1024).optional(),
}).refine((n) => !(n.credsFile && n.token), 'credsFile and token: give one, not both');

/**
 * How the daemon's gRPC server and clients are secured: mutual TLS with these files, or
 * plaintext only when asked for by name (`insecure: true`). There is no default: without a
 * grpc section (or --tls-* / --insecure) a daemon refuses to start (common/tls.ts).
 */
export const grpcSchema = z.union([
  z.strictObject({ tls: z.strictObject({ ca: filePath, cert: filePath, key: filePath }) }),
  z.strictObject({ insecure: z.literal(true, 'insecure: only `true` is meaningful (write the tls section to secure gRPC)') }),
], 'grpc: either `tls: {ca, cert, key}` or `insecure: true`');

export const metricsSchema = z.strictObject({
  /** Prometheus endpoint port; absent: no endpoint (two daemons on one machine never fight over a default). */
  port: port.optional(),
  host: z.string().min(1).max(255).default('127.0.0.1'),
});

export const logLevel = z.enum(LOG_LEVELS);

/** Keys whose values are secrets: redacted wherever a config is printed or logged. */
export const SECRET_KEYS: ReadonlySet<string> = new Set(['password', 'token']);
