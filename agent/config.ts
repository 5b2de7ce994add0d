/**
 * bpfleet-agent's config: /etc/bpfleet/agent.yaml (or --config), BPFLEET_* variables and
 * flags, in that order of precedence (common/config/load.ts). infra/config/agent.yaml is
 * an annotated example.
 */
import { hostname } from 'node:os';
import { z } from 'zod';
import { HOST_NAME_RE } from '../common/keys.js';
import { loadConfig, parseLabels, type EnvBinding, type FlagValue, type LoadedConfig } from '../common/config/load.js';
import { SHARED_ENV, explicitConfigPath, sharedEnvValues, sharedFlagValues, wholeFlag, type SharedFlags } from '../common/config/daemon.js';
import { etcdSchema, filePath, grpcSchema, hostPort, logLevel, metricsSchema, natsSchema } from '../common/config/schema.js';

export const AGENT_CONFIG_PATH = '/etc/bpfleet/agent.yaml';
/** Most labels one host carries. */
export const MAX_LABELS = 64;

/** This machine's short host name, lowercased: the default host.name. */
export const defaultHostName = (): string => hostname().toLowerCase().split('.')[0]!;

const labels = z.record(
  z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._/-]{0,252}$/, 'label keys: letters, digits, ".", "_", "/", "-", at most 253'),
  z.string().regex(/^[^\s,=]{0,253}$/, 'label values: at most 253 characters, no spaces, "," or "="'),
).refine((m) => Object.keys(m).length <= MAX_LABELS, `at most ${MAX_LABELS} labels`);

export const agentConfigSchema = z.strictObject({
  host: z.strictObject({
    name: z.string().regex(HOST_NAME_RE, 'host name: lowercase letters, digits and inner dashes, at most 63').default(defaultHostName),
    labels: labels.default({}),
  }).prefault({}),
  /** AgentService gRPC address: keep it on loopback or a management network. */
  listen: hostPort.default('127.0.0.1:50061'),
  /** Address the control plane dials, when it differs from listen. */
  advertise: hostPort.optional(),
  etcd: etcdSchema.prefault({}),
  nats: natsSchema.prefault({}),
  /** No default: neither TLS nor insecure given refuses to start (transportFromConfig). */
  grpc: grpcSchema.optional(),
  /** bpffs directory of this agent's pinned links, programs and maps. */
  pinRoot: filePath.refine((p) => p.startsWith('/'), 'an absolute path (a directory on bpffs)').default('/sys/fs/bpf/bpfleet'),
  /** Local artifact cache, by digest. */
  cacheDir: filePath.default('/var/cache/bpfleet'),
  metrics: metricsSchema.prefault({}),
  signatures: z.strictObject({
    /** Refuse modules not signed by a key in trustedKeysDir. */
    require: z.boolean().default(false),
    /** Directory of ed25519 public keys (*.pem); signed modules are checked against them. */
    trustedKeysDir: filePath.optional(),
  }).refine((s) => !s.require || s.trustedKeysDir !== undefined, '--require-signatures needs --trusted-keys <dir> (in a config file: require: true needs trustedKeysDir)').prefault({}),
  logLevel: logLevel.default('info'),
  /** "kernel" (libbpf) or "sim" (in-memory, for scale tests only). */
  driver: z.enum(['kernel', 'sim']).default('kernel'),
  /** Network namespace whose interfaces this agent drives (the agent itself stays in its own). */
  netns: z.string().regex(/^[A-Za-z0-9._-]{1,255}$/, 'a network namespace name (ip netns)').optional(),
  /** Telemetry report interval, ms: 10 ms to 1 hour. */
  telemetryIntervalMs: z.number().int().min(10).max(3_600_000).default(1000),
  /** Registration lease TTL, s: 1 s to 1 hour. */
  leaseTtlSeconds: z.number().int().min(1).max(3600).default(10),
  /** With driver sim: how long each load takes (stands in for the verifier), ms, at most 10 min. */
  simLoadDelayMs: z.number().int().min(0).max(600_000).default(0),
  /** With the sim driver: how far its telemetry's wall clock is shifted, ms (tests of clock skew; ±1 day). */
  simClockOffsetMs: z.number().int().min(-86_400_000).max(86_400_000).default(0),
});

export type AgentDaemonConfig = z.output<typeof agentConfigSchema>;

export const AGENT_ENV: readonly EnvBinding[] = [
  ...SHARED_ENV,
  { name: 'BPFLEET_HOST', path: ['host', 'name'] },
  { name: 'BPFLEET_LABELS', path: ['host', 'labels'], parse: (t) => parseLabels(t) },
  { name: 'BPFLEET_ADVERTISE', path: ['advertise'] },
  { name: 'BPFLEET_PIN_ROOT', path: ['pinRoot'] },
  { name: 'BPFLEET_CACHE_DIR', path: ['cacheDir'] },
  { name: 'BPFLEET_TRUSTED_KEYS', path: ['signatures', 'trustedKeysDir'] },
];

/** The agent's own flags, as commander parses them (shared ones in SharedFlags). */
export interface AgentFlags extends SharedFlags {
  host?: string;
  advertise?: string;
  label?: Record<string, string>;
  driver?: string;
  pinRoot?: string;
  netns?: string;
  cacheDir?: string;
  telemetryInterval?: string;
  leaseTtl?: string;
  requireSignatures?: boolean;
  trustedKeys?: string;
  simLoadDelay?: string;
  simClockOffset?: string;
}

function agentFlagValues(opts: AgentFlags): FlagValue[] {
  const out = sharedFlagValues(opts);
  const add = (flag: string, path: string[], value: unknown) => {
    if (value !== undefined) out.push({ flag, path, value });
  };
  add('--host', ['host', 'name'], opts.host);
  add('--label', ['host', 'labels'], opts.label);
  add('--advertise', ['advertise'], opts.advertise);
  add('--driver', ['driver'], opts.driver);
  add('--pin-root', ['pinRoot'], opts.pinRoot);
  add('--netns', ['netns'], opts.netns);
  add('--cache-dir', ['cacheDir'], opts.cacheDir);
  add('--telemetry-interval', ['telemetryIntervalMs'], wholeFlag(opts.telemetryInterval));
  add('--lease-ttl', ['leaseTtlSeconds'], wholeFlag(opts.leaseTtl));
  add('--require-signatures', ['signatures', 'require'], opts.requireSignatures);
  add('--trusted-keys', ['signatures', 'trustedKeysDir'], opts.trustedKeys);
  add('--sim-load-delay', ['simLoadDelayMs'], wholeFlag(opts.simLoadDelay));
  add('--sim-clock-offset', ['simClockOffsetMs'], opts.simClockOffset === undefined ? undefined : /^-?\d+$/.test(opts.simClockOffset) ? Number(opts.simClockOffset) : opts.simClockOffset);
  return out;
}

/** The agent's effective config from its flags, `env` and the config file. */
export function loadAgentConfig(opts: AgentFlags, env: NodeJS.ProcessEnv = process.env): LoadedConfig<AgentDaemonConfig> {
  return loadConfig(agentConfigSchema, {
    explicitPath: explicitConfigPath(opts, env, 'BPFLEET_AGENT_CONFIG'), defaultPath: AGENT_CONFIG_PATH,
    env: sharedEnvValues(env), envBindings: AGENT_ENV, flags: agentFlagValues(opts),
  });
}

/** Fields a SIGHUP applies to a running agent; a change to any other needs a restart. */
export const AGENT_LIVE_FIELDS: ReadonlySet<string> = new Set(['logLevel', 'host.labels']);

/** Config fields this build accepts and validates but does not use yet (store credentials land separately). */
export const AGENT_UNWIRED_FIELDS = ['etcd.username', 'etcd.password', 'etcd.passwordFile', 'nats.credsFile', 'nats.token'] as const;
