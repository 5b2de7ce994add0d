/**
 * bpfleet-control's config: /etc/bpfleet/control.yaml (or --config), BPFLEET_* variables and
 * flags, in that order of precedence (common/config/load.ts). infra/config/control.yaml is
 * an annotated example.
 */
import { hostname } from 'node:os';
import { z } from 'zod';
import { loadConfig, type EnvBinding, type FlagValue, type LoadedConfig } from '../common/config/load.js';
import { SHARED_ENV, explicitConfigPath, sharedEnvValues, sharedFlagValues, wholeFlag, type SharedFlags } from '../common/config/daemon.js';
import { etcdSchema, filePath, grpcSchema, hostPort, logLevel, metricsSchema, natsSchema } from '../common/config/schema.js';
import { DEFAULT_TELEMETRY_MAX_SKEW_MS } from './analysis/ingest.js';

export const CONTROL_CONFIG_PATH = '/etc/bpfleet/control.yaml';

export const controlConfigSchema = z.strictObject({
  /** Replica identity for leader election; default <hostname>-<pid>, unique per process. */
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'letters, digits, ".", "_", "-", at most 128').default(() => `${hostname()}-${process.pid}`),
  /** ControlService gRPC address. */
  listen: hostPort.default('127.0.0.1:50051'),
  etcd: etcdSchema.prefault({}),
  nats: natsSchema.prefault({}),
  /** No default: neither TLS nor insecure given refuses to start (transportFromConfig). */
  grpc: grpcSchema.optional(),
  metrics: metricsSchema.prefault({}),
  /** Fleet-wide signature policy: CreateRollout and UndoRollout refuse a module it refuses, before any host is touched. */
  signatures: z.strictObject({
    /** Refuse a rollout of a module not signed by a key in trustedKeysDir. */
    require: z.boolean().default(false),
    /** Directory of ed25519 public keys (*.pem); without require, signed modules must verify but unsigned ones pass. */
    trustedKeysDir: filePath.optional(),
  }).refine((s) => !s.require || s.trustedKeysDir !== undefined, '--require-signatures needs --trusted-keys <dir> (in a config file: require: true needs trustedKeysDir)').prefault({}),
  logLevel: logLevel.default('info'),
  /** Leader lease TTL, s (failover takes about this long): 1 s to 10 min. */
  leaderTtlSeconds: z.number().int().min(1).max(600).default(5),
  /** Telemetry stamped further ahead of this replica's clock than this is dropped, ms: 0 to 1 h. */
  telemetryMaxSkewMs: z.number().int().min(0).max(3_600_000).default(DEFAULT_TELEMETRY_MAX_SKEW_MS),
  /** JetStream replicas of the module object store when this replica creates it: 1, or 3/5 on a NATS cluster. */
  artifactReplicas: z.number().int().min(1).max(5).default(1),
});

export type ControlDaemonConfig = z.output<typeof controlConfigSchema>;

export const CONTROL_ENV: readonly EnvBinding[] = [
  ...SHARED_ENV,
  { name: 'BPFLEET_ID', path: ['id'] },
  { name: 'BPFLEET_TRUSTED_KEYS', path: ['signatures', 'trustedKeysDir'] },
];

export interface ControlFlags extends SharedFlags {
  id?: string;
  leaderTtl?: string;
  telemetryMaxSkew?: string;
  artifactReplicas?: string;
  requireSignatures?: boolean;
  trustedKeys?: string;
}

function controlFlagValues(opts: ControlFlags): FlagValue[] {
  const out = sharedFlagValues(opts);
  if (opts.id !== undefined) out.push({ flag: '--id', path: ['id'], value: opts.id });
  if (opts.leaderTtl !== undefined) out.push({ flag: '--leader-ttl', path: ['leaderTtlSeconds'], value: wholeFlag(opts.leaderTtl) });
  if (opts.telemetryMaxSkew !== undefined) out.push({ flag: '--telemetry-max-skew', path: ['telemetryMaxSkewMs'], value: wholeFlag(opts.telemetryMaxSkew) });
  if (opts.artifactReplicas !== undefined) out.push({ flag: '--artifact-replicas', path: ['artifactReplicas'], value: wholeFlag(opts.artifactReplicas) });
  if (opts.requireSignatures !== undefined) out.push({ flag: '--require-signatures', path: ['signatures', 'require'], value: opts.requireSignatures });
  if (opts.trustedKeys !== undefined) out.push({ flag: '--trusted-keys', path: ['signatures', 'trustedKeysDir'], value: opts.trustedKeys });
  return out;
}

/** The control plane's effective config from its flags, `env` and the config file. */
export function loadControlConfig(opts: ControlFlags, env: NodeJS.ProcessEnv = process.env): LoadedConfig<ControlDaemonConfig> {
  return loadConfig(controlConfigSchema, {
    explicitPath: explicitConfigPath(opts, env, 'BPFLEET_CONTROL_CONFIG'), defaultPath: CONTROL_CONFIG_PATH,
    env: sharedEnvValues(env), envBindings: CONTROL_ENV, flags: controlFlagValues(opts),
  });
}

/** Fields a SIGHUP applies to a running replica; a change to any other needs a restart. */
export const CONTROL_LIVE_FIELDS: ReadonlySet<string> = new Set(['logLevel']);

/** Config fields this build accepts and validates but does not use yet (store credentials land separately). */
export const CONTROL_UNWIRED_FIELDS = ['etcd.username', 'etcd.password', 'etcd.passwordFile', 'nats.credsFile', 'nats.token'] as const;
