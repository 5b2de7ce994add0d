/**
 * Loads a daemon's effective config from three layers, later ones winning field by field:
 * the YAML file (/etc/bpfleet/<daemon>.yaml, or --config), BPFLEET_* environment variables,
 * then command-line flags. A flag or variable replaces the whole field it names (a list or
 * a label map is not merged with the file's). The result is validated as a whole; each
 * error names the field and where its value came from.
 */
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import type { z } from 'zod';
import { BpfleetError } from '../errors.js';

/** Largest config file read; a real one is a few hundred bytes. */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/** One BPFLEET_* variable and the config field it sets. */
export interface EnvBinding {
  name: string;
  /** Field path, e.g. ['etcd', 'endpoints']. */
  path: readonly string[];
  /** Text to value; default: the text itself. Throw an Error to refuse it. */
  parse?: (text: string) => unknown;
}

/** One command-line flag that was given, and the field it sets. */
export interface FlagValue {
  flag: string;
  path: readonly string[];
  value: unknown;
}

export interface ConfigRequest {
  /** --config, when given: must exist. */
  explicitPath?: string;
  /** Read when no --config is given, if it exists (e.g. /etc/bpfleet/agent.yaml). */
  defaultPath: string;
  env: NodeJS.ProcessEnv;
  envBindings: readonly EnvBinding[];
  flags: readonly FlagValue[];
}

export interface LoadedConfig<T> {
  config: T;
  /** The file read, or null when there was none. */
  file: string | null;
}

/** "--label", "env BPFLEET_ETCD", "/etc/bpfleet/agent.yaml": where each set field came from. */
type Provenance = Map<string, string>;

const invalid = (message: string) => new BpfleetError('INVALID_ARGUMENT', 'CONFIG_INVALID', message);

/** The file's top-level mapping; {} when `path` is the default and does not exist. */
export function readConfigFile(path: string, explicit: boolean): Record<string, unknown> | null {
  let text: string;
  try {
    const bytes = readFileSync(path);
    if (bytes.length > MAX_CONFIG_BYTES) throw invalid(`${path}: ${bytes.length} bytes is more than the ${MAX_CONFIG_BYTES}-byte limit for a config file`);
    text = bytes.toString('utf8');
  } catch (err) {
    if (err instanceof BpfleetError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !explicit) return null;
    throw new BpfleetError('INVALID_ARGUMENT', 'CONFIG_UNREADABLE', `cannot read config file ${path}: ${(err as Error).message}`);
  }
  const doc = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) throw invalid(`${path}: not valid YAML: ${doc.errors[0]!.message}`);
  const value: unknown = doc.toJS();
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw invalid(`${path}: expected a mapping of fields at the top level`);
  return value as Record<string, unknown>;
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (next === null || typeof next !== 'object' || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path.at(-1)!] = value;
}

function recordFileFields(value: unknown, path: string[], source: string, provenance: Provenance): void {
  provenance.set(path.join('.'), source);
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) recordFileFields(v, [...path, k], source, provenance);
  }
}

/** The layers merged, not yet validated, with where each field came from. */
export function mergeLayers(file: Record<string, unknown> | null, filePath: string | null, req: Pick<ConfigRequest, 'env' | 'envBindings' | 'flags'>): { raw: Record<string, unknown>; provenance: Provenance } {
  const raw = structuredClone(file ?? {});
  const provenance: Provenance = new Map();
  if (file && filePath) recordFileFields(file, [], filePath, provenance);
  for (const b of req.envBindings) {
    const text = req.env[b.name];
    if (text === undefined || text === '') continue;
    let value: unknown;
    try {
      value = b.parse ? b.parse(text) : text;
    } catch (err) {
      throw invalid(`env ${b.name}: ${(err as Error).message}`);
    }
    setPath(raw, b.path, value);
    provenance.set(b.path.join('.'), `env ${b.name}`);
  }
  for (const f of req.flags) {
    setPath(raw, f.path, f.value);
    provenance.set(f.path.join('.'), f.flag);
  }
  return { raw, provenance };
}

/** "etcd.endpoints.0 (from env BPFLEET_ETCD)": the field and the layer that set it. */
function fieldName(path: readonly PropertyKey[], provenance: Provenance): string {
  const name = path.map(String).join('.') || '(top level)';
  for (let n = path.length; n > 0; n--) {
    const source = provenance.get(path.slice(0, n).map(String).join('.'));
    if (source) return `${name} (from ${source})`;
  }
  return name;
}

/** Validates merged layers against `schema`; throws CONFIG_INVALID listing every bad field. */
export function validateConfig<S extends z.ZodType>(schema: S, raw: unknown, provenance: Provenance = new Map()): z.output<S> {
  const result = schema.safeParse(raw);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((k) => `${fieldName([...issue.path, k], provenance)}: unknown field`).join('\n');
    }
    // A bad map key: the key's own rule says why, not zod's "Invalid key in record".
    const message = issue.code === 'invalid_key' ? issue.issues.map((i) => i.message).join('; ') : issue.message;
    return `${fieldName(issue.path, provenance)}: ${message}`;
  });
  throw invalid(`invalid config:\n  ${lines.join('\n  ')}`);
}

/** Reads, merges and validates: the effective config of a daemon. */
export function loadConfig<S extends z.ZodType>(schema: S, req: ConfigRequest): LoadedConfig<z.output<S>> {
  const path = req.explicitPath ?? req.defaultPath;
  const file = readConfigFile(path, req.explicitPath !== undefined);
  const { raw, provenance } = mergeLayers(file, file ? path : null, req);
  try {
    return { config: validateConfig(schema, raw, provenance), file: file ? path : null };
  } catch (err) {
    if (err instanceof BpfleetError && file) err.message = err.message.replace('invalid config:', `invalid config (${path}):`);
    throw err;
  }
}

/** "a,b,c" → ["a", "b", "c"] (empty items dropped): how list-valued flags and variables are written. */
export const commaList = (text: string): string[] => text.split(',').map((s) => s.trim()).filter(Boolean);

/** A port number from text; throws naming what was expected. */
export function parsePort(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) > 65535) throw new Error(`"${text}" is not a TCP port (0-65535; 0 picks a free one)`);
  return Number(text);
}

/** A whole number from text (the schema checks its range). */
export function parseWhole(text: string): number {
  if (!/^\d+$/.test(text)) throw new Error(`"${text}" is not a whole number`);
  return Number(text);
}

/** "k=v,k2=v2" → {k: v, k2: v2}; throws on an item without "=". */
export function parseLabels(text: string, into: Record<string, string> = {}): Record<string, string> {
  const out = { ...into };
  for (const pair of commaList(text)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`label "${pair}" is not key=value`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}
