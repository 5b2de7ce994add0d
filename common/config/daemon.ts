/**
 * What both daemons do with their config: the shared flags (--config, --print-config,
 * --log-level, --etcd, --nats, --etcd-ca/cert/key, --nats-ca/cert/key, --tls-ca/cert/key,
 * --insecure, --listen, --metrics-*) and variables, printing the effective
 * config, and re-reading it on SIGHUP (`systemctl reload`).
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import YAML from 'yaml';
import { BpfleetError } from '../errors.js';
import { commaList, parsePort, type EnvBinding, type FlagValue } from './load.js';
import { redact } from './redact.js';
import { LOG_LEVELS } from './schema.js';

/** Variables both daemons read; each daemon adds its own. */
export const SHARED_ENV: readonly EnvBinding[] = [
  { name: 'BPFLEET_LISTEN', path: ['listen'] },
  { name: 'BPFLEET_ETCD', path: ['etcd', 'endpoints'], parse: commaList },
  { name: 'BPFLEET_ETCD_USERNAME', path: ['etcd', 'username'] },
  { name: 'BPFLEET_ETCD_PASSWORD', path: ['etcd', 'password'] },
  { name: 'BPFLEET_NATS', path: ['nats', 'servers'], parse: commaList },
  { name: 'BPFLEET_NATS_TOKEN', path: ['nats', 'token'] },
  // Replaces the whole grpc section, as --insecure does; with BPFLEET_TLS_* see sharedEnvValues.
  { name: 'BPFLEET_INSECURE', path: ['grpc'], parse: insecureVariable },
  ...(['etcd', 'nats'] as const).flatMap((store) => (['ca', 'cert', 'key'] as const).map((part) => ({ name: `BPFLEET_${store.toUpperCase()}_${part.toUpperCase()}`, path: [store, 'tls', part] }))),
  ...(['ca', 'cert', 'key'] as const).map((part) => ({ name: `BPFLEET_TLS_${part.toUpperCase()}`, path: ['grpc', 'tls', part] })),
  { name: 'BPFLEET_METRICS_PORT', path: ['metrics', 'port'], parse: parsePort },
  { name: 'BPFLEET_METRICS_HOST', path: ['metrics', 'host'] },
  { name: 'BPFLEET_LOG_LEVEL', path: ['logLevel'] },
];

/**
 * BPFLEET_INSECURE, the env form of --insecure: "1" or "true" replace the file's grpc
 * section with `insecure: true` (and the daemon logs the same warning). Any other text is
 * refused rather than read as "no": a daemon must never guess which way security goes.
 */
function insecureVariable(text: string): { insecure: true } {
  if (text === '1' || text === 'true') return { insecure: true };
  throw new Error(`"${text.slice(0, 16)}": only 1 or true (unset it to use the TLS settings)`);
}

/**
 * The shared variables of `env`, checked together: BPFLEET_INSECURE with any BPFLEET_TLS_*
 * is INVALID_ARGUMENT/CONFIG_INVALID naming both, as --insecure with --tls-* is. Returns `env`.
 */
export function sharedEnvValues(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const tls = ['BPFLEET_TLS_CA', 'BPFLEET_TLS_CERT', 'BPFLEET_TLS_KEY'].filter((v) => env[v]);
  if (env.BPFLEET_INSECURE && tls.length > 0) {
    throw new BpfleetError('INVALID_ARGUMENT', 'CONFIG_INVALID', `invalid config: env BPFLEET_INSECURE and env ${tls.join(', ')} exclude each other (TLS off, or TLS with these files)`);
  }
  return env;
}

function portFlag(value: string): number {
  try {
    return parsePort(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/**
 * Adds the shared flags to a daemon's command. No flag has a commander default: an absent
 * flag leaves the file's (or the built-in) value, so defaults live in the schema alone.
 */
export function addSharedOptions(command: Command, defaultConfigPath: string, configVariable: DaemonConfigVariable, listenDefault: string): Command {
  return command
    .option('--config <file>', `YAML config file (default ${defaultConfigPath} when it exists; env ${configVariable})`)
    .option('--print-config', 'print the effective config (file < env < flags, secrets redacted) as YAML and exit')
    .addOption(new Option('--log-level <level>', 'log level (default info; env BPFLEET_LOG_LEVEL)').choices(LOG_LEVELS))
    .option('--listen <addr>', `gRPC listen address (default ${listenDefault}; env BPFLEET_LISTEN)`)
    .option('--etcd <urls>', 'comma-separated etcd endpoints (default http://127.0.0.1:2379; env BPFLEET_ETCD)')
    .option('--nats <urls>', 'comma-separated NATS servers (default nats://127.0.0.1:4222; env BPFLEET_NATS)')
    .option('--etcd-ca <file>', 'CA bundle (PEM) that signs the etcd servers\' certificates (env BPFLEET_ETCD_CA)')
    .option('--etcd-cert <file>', 'client certificate (PEM) this daemon presents to etcd; its CN is the etcd user (env BPFLEET_ETCD_CERT)')
    .option('--etcd-key <file>', 'its private key (PEM) (env BPFLEET_ETCD_KEY)')
    .option('--nats-ca <file>', 'CA bundle (PEM) that signs the NATS servers\' certificates (env BPFLEET_NATS_CA)')
    .option('--nats-cert <file>', 'client certificate (PEM) this daemon presents to NATS; its SPIFFE ID is the NATS user (env BPFLEET_NATS_CERT)')
    .option('--nats-key <file>', 'its private key (PEM) (env BPFLEET_NATS_KEY)')
    .option('--tls-ca <file>', 'fleet CA bundle (PEM): gRPC peers must present a certificate it signed (env BPFLEET_TLS_CA)')
    .option('--tls-cert <file>', 'this daemon\'s gRPC certificate (PEM), from `bpfleet pki issue` (env BPFLEET_TLS_CERT)')
    .option('--tls-key <file>', 'its private key (PEM) (env BPFLEET_TLS_KEY)')
    .option('--insecure', 'gRPC without TLS: no authentication, no roles; for experiments only (one of this or --tls-* is required; env BPFLEET_INSECURE=1)')
    .option('--metrics-port <port>', 'serve Prometheus metrics at http://<metrics-host>:<port>/metrics (0: any free port); off unless given (env BPFLEET_METRICS_PORT)', portFlag)
    .option('--metrics-host <addr>', 'address the metrics endpoint binds to (default 127.0.0.1; env BPFLEET_METRICS_HOST)');
}

export interface SharedFlags {
  config?: string;
  printConfig?: boolean;
  logLevel?: string;
  listen?: string;
  etcd?: string;
  nats?: string;
  etcdCa?: string;
  etcdCert?: string;
  etcdKey?: string;
  natsCa?: string;
  natsCert?: string;
  natsKey?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  insecure?: boolean;
  metricsPort?: number;
  metricsHost?: string;
}

/** The shared flags that were given, as config fields. */
export function sharedFlagValues(opts: SharedFlags): FlagValue[] {
  const out: FlagValue[] = [];
  const add = (flag: string, path: string[], value: unknown) => {
    if (value !== undefined) out.push({ flag, path, value });
  };
  add('--log-level', ['logLevel'], opts.logLevel);
  add('--listen', ['listen'], opts.listen);
  add('--etcd', ['etcd', 'endpoints'], opts.etcd === undefined ? undefined : commaList(opts.etcd));
  add('--nats', ['nats', 'servers'], opts.nats === undefined ? undefined : commaList(opts.nats));
  add('--etcd-ca', ['etcd', 'tls', 'ca'], opts.etcdCa);
  add('--etcd-cert', ['etcd', 'tls', 'cert'], opts.etcdCert);
  add('--etcd-key', ['etcd', 'tls', 'key'], opts.etcdKey);
  add('--nats-ca', ['nats', 'tls', 'ca'], opts.natsCa);
  add('--nats-cert', ['nats', 'tls', 'cert'], opts.natsCert);
  add('--nats-key', ['nats', 'tls', 'key'], opts.natsKey);
  if (opts.insecure && (opts.tlsCa || opts.tlsCert || opts.tlsKey)) {
    throw new InvalidArgumentError('--insecure and TLS files (--tls-ca, --tls-cert, --tls-key) exclude each other');
  }
  // --insecure, or all three TLS files, replace the whole grpc section (the file's choice of
  // TLS or insecure included): the flags win. Some of the files complete the file's tls section.
  add('--insecure', ['grpc'], opts.insecure ? { insecure: true } : undefined);
  if (opts.tlsCa && opts.tlsCert && opts.tlsKey) {
    add('--tls-ca', ['grpc'], { tls: { ca: opts.tlsCa, cert: opts.tlsCert, key: opts.tlsKey } });
  } else {
    add('--tls-ca', ['grpc', 'tls', 'ca'], opts.tlsCa);
    add('--tls-cert', ['grpc', 'tls', 'cert'], opts.tlsCert);
    add('--tls-key', ['grpc', 'tls', 'key'], opts.tlsKey);
  }
  add('--metrics-port', ['metrics', 'port'], opts.metricsPort);
  add('--metrics-host', ['metrics', 'host'], opts.metricsHost);
  return out;
}

/** A numeric flag's text as a number when it is one; else the text, for the schema to refuse by field name. */
export const wholeFlag = (text: string | undefined): number | string | undefined => (text === undefined ? undefined : /^\d+$/.test(text) ? Number(text) : text);

/** Which of `fields` (dotted names) are set in `config`: settings this build cannot honour yet. */
export function configuredFields(config: object, fields: readonly string[]): string[] {
  return fields.filter((f) => f.split('.').reduce<unknown>((node, k) => (node as Record<string, unknown> | undefined)?.[k], config) !== undefined);
}

/** Throws FAILED_PRECONDITION/CONFIG_NOT_WIRED naming every field of `fields` that `config` sets: a daemon never runs without a setting it was asked for. */
export function refuseUnwired(config: object, fields: readonly string[]): void {
  const unwired = configuredFields(config, fields);
  if (unwired.length > 0) {
    throw new BpfleetError('FAILED_PRECONDITION', 'CONFIG_NOT_WIRED', `${unwired.join(', ')}: accepted in the config, but this build does not use them yet; refusing to run without them`);
  }
}

/**
 * Each daemon's variable naming its config file. BPFLEET_CONFIG is the CLI's contexts file
 * (like KUBECONFIG): a daemon never reads it, so one shell can hold both.
 */
export type DaemonConfigVariable = 'BPFLEET_AGENT_CONFIG' | 'BPFLEET_CONTROL_CONFIG';

/** --config, else the daemon's variable, else undefined (the default path, if it exists). */
export function explicitConfigPath(opts: SharedFlags, env: NodeJS.ProcessEnv, variable: DaemonConfigVariable): string | undefined {
  return opts.config ?? (env[variable] || undefined);
}

/** The effective config as YAML with secrets redacted: what --print-config writes. */
export function printableConfig(config: object): string {
  return YAML.stringify(redact(config));
}

/** Dotted names of the fields whose values differ between two configs (e.g. "host.labels"). */
export function changedFields(before: unknown, after: unknown, path = ''): string[] {
  const isMap = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  // A label map is one field: a changed label changes "host.labels".
  if (isMap(before) && isMap(after) && path !== 'labels' && !path.endsWith('.labels')) {
    const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
    return [...keys].flatMap((k) => changedFields(before[k], after[k], path ? `${path}.${k}` : k));
  }
  return JSON.stringify(before) === JSON.stringify(after) ? [] : [path];
}
