/**
 * Where the CLI connects and as whom: the control plane's address and the client
 * certificate, from (first match wins, field by field) the command line, the environment,
 * and the current context of the config file, kubeconfig-like:
 *
 *   # ~/.config/bpfleet/config.yaml (or $BPFLEET_CONFIG, or $XDG_CONFIG_HOME/bpfleet/config.yaml)
 *   current-context: prod
 *   contexts:
 *     - name: prod
 *       server: 10.0.0.1:50051,10.0.0.2:50051
 *       ca: pki/ca.crt          # relative paths are relative to the config file
 *       cert: pki/alice.crt
 *       key: pki/alice.key
 *     - name: lab
 *       server: 127.0.0.1:50051
 *       insecure: true
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import YAML from 'yaml';
import { BpfleetError } from '../../common/errors.js';
import { loadTransport, type TransportSecurity } from '../../common/tls.js';
import { DEFAULT_SERVER } from './default-server.js';

/** Config files larger than this are refused (a config with 100 contexts is ~20 KiB). */
const MAX_CONFIG_BYTES = 256 * 1024;

/** The global options that say where and as whom (commander's camelCase names). */
export interface ConnectionFlags {
  server?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  insecure?: boolean;
  context?: string;
}

export interface Connection {
  server: string;
  transport: TransportSecurity;
}

interface Context {
  name: string;
  server?: string;
  ca?: string;
  cert?: string;
  key?: string;
  insecure?: boolean;
}

const usage = (message: string) => new BpfleetError('INVALID_ARGUMENT', 'USAGE', message);

/** The config file's path: $BPFLEET_CONFIG, else $XDG_CONFIG_HOME/bpfleet/config.yaml, else ~/.config/bpfleet/config.yaml. */
export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.BPFLEET_CONFIG) return env.BPFLEET_CONFIG;
  return join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'bpfleet', 'config.yaml');
}

/**
 * Reads the named context (or the file's current-context) from the config file at `path`.
 * No file and no --context: null. Throws INVALID_ARGUMENT/USAGE naming the file and the field
 * for a file that is unreadable, too large or malformed, or a context that is not in it.
 */
export function readContext(path: string, name: string | undefined): Context | null {
  if (!existsSync(path)) {
    if (name) throw usage(`--context ${name}: no config file at ${path}`);
    return null;
  }
  const text = readFileSync(path);
  if (text.length > MAX_CONFIG_BYTES) throw usage(`${path}: ${text.length} bytes is over the ${MAX_CONFIG_BYTES}-byte limit`);
  let doc: unknown;
  try {
    doc = YAML.parse(text.toString());
  } catch (err) {
    throw usage(`${path}: not YAML: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) doc = {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw usage(`${path}: expected a mapping with current-context and contexts`);
  const { 'current-context': current, contexts = [] } = doc as { 'current-context'?: unknown; contexts?: unknown };
  if (!Array.isArray(contexts)) throw usage(`${path}: contexts: expected a list`);
  const wanted = name ?? current;
  if (wanted === undefined) return null;
  if (typeof wanted !== 'string') throw usage(`${path}: current-context: expected a context name`);
  const found = contexts.find((c) => (c as { name?: unknown } | null)?.name === wanted) as Record<string, unknown> | undefined;
  if (!found) throw usage(`${name ? `--context ${name}` : `current-context ${wanted}`}: no such context in ${path} (has: ${contexts.map((c) => String((c as { name?: unknown })?.name)).join(', ') || 'none'})`);
  const ctx: Context = { name: wanted };
  for (const field of ['server', 'ca', 'cert', 'key'] as const) {
    const v = found[field];
    if (v === undefined) continue;
    if (typeof v !== 'string' || !v) throw usage(`${path}: context ${wanted}: ${field}: expected a non-empty string`);
    ctx[field] = field === 'server' || isAbsolute(v) ? v : resolve(dirname(path), v);
  }
  if (found.insecure !== undefined) {
    if (typeof found.insecure !== 'boolean') throw usage(`${path}: context ${wanted}: insecure: expected true or false`);
    ctx.insecure = found.insecure;
  }
  return ctx;
}

/**
 * Where and as whom to connect: each of server, ca, cert, key from the flag, else the
 * environment (BPFLEET_SERVER, BPFLEET_CA, BPFLEET_CERT, BPFLEET_KEY), else the context.
 * --insecure (or BPFLEET_INSECURE=1, or `insecure: true` in the context) connects without
 * TLS. Throws INVALID_ARGUMENT saying what is missing and the three ways to give it.
 */
export function resolveConnection(flags: ConnectionFlags, env: NodeJS.ProcessEnv = process.env): Connection {
  const path = configPath(env);
  const ctx = readContext(path, flags.context);
  const pick = (flag: string | undefined, envName: string, field: 'server' | 'ca' | 'cert' | 'key') => flag || env[envName] || ctx?.[field];
  const server = pick(flags.server, 'BPFLEET_SERVER', 'server') ?? DEFAULT_SERVER;
  const ca = pick(flags.tlsCa, 'BPFLEET_CA', 'ca');
  const cert = pick(flags.tlsCert, 'BPFLEET_CERT', 'cert');
  const key = pick(flags.tlsKey, 'BPFLEET_KEY', 'key');
  const insecure = Boolean(flags.insecure || env.BPFLEET_INSECURE === '1' || env.BPFLEET_INSECURE === 'true' || (!ca && !cert && !key && ctx?.insecure));
  const from = ctx ? `context ${ctx.name} in ${path}` : `a context in ${path}`;
  if (!insecure && !(ca && cert && key)) {
    const missing = [['--tls-ca', 'BPFLEET_CA', 'ca', ca], ['--tls-cert', 'BPFLEET_CERT', 'cert', cert], ['--tls-key', 'BPFLEET_KEY', 'key', key]]
      .filter(([, , , v]) => !v).map(([flag, e, field]) => `${flag} (or ${e}, or ${field}: in ${from})`);
    throw new BpfleetError('INVALID_ARGUMENT', 'INSECURE_NOT_CHOSEN',
      `no client certificate to reach ${server}: missing ${missing.join(', ')}. Get one with \`bpfleet pki issue user <name> --role <role>\` from your fleet's CA admin; --insecure only for a control plane started with --insecure`);
  }
  const transport = loadTransport(insecure ? { insecure: true } : { tlsCa: ca, tlsCert: cert, tlsKey: key }, 'bpfleet',
    { ca: '--tls-ca', cert: '--tls-cert', key: '--tls-key', insecure: '--insecure' });
  return { server, transport };
}
