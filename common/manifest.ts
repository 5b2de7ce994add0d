import YAML from 'yaml';
import { z } from 'zod';
import { HookKind, type ModuleManifest } from '../proto/gen/bpfleet/v1/module.js';
import { HOOK_NAMES, hookKind } from './attachment.js';
import { BpfleetError } from './errors.js';
import { echo, FIELD_BYTES } from './limits.js';

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const VERSION_RE = /^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$/;
const C_IDENT_RE = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const HOOK_KINDS: ReadonlySet<HookKind> = new Set(HOOK_NAMES.map(hookKind));

/**
 * Largest module object accepted. Real BPF objects are kilobytes to a few megabytes; the
 * limit keeps a mistaken push (a binary, an archive) from reaching the gRPC size limit.
 */
export const MAX_OBJECT_BYTES = 3 * 1024 * 1024;

/** Slots in the `bpfleet_counters` map (see agent/bpf/bpfleet.h). */
export const MAX_COUNTERS = 8;

/**
 * Programs and persistent maps per module: far more than any real module has, few enough
 * that a manifest stays a few kilobytes inside the module's etcd value (limit 1.5 MiB).
 */
export const MAX_PROGRAMS = 64;
export const MAX_PERSISTENT_MAPS = 64;

/** The manifest file a module author writes next to the object (YAML). */
const manifestFileSchema = z.strictObject({
  name: z.string().regex(NAME_RE, 'lowercase letters, digits and dashes'),
  version: z.string().regex(VERSION_RE, 'a version such as 1.2.0'),
  object: z.string().min(1),
  description: z.string().max(FIELD_BYTES.description).optional(),
  programs: z.array(z.strictObject({
    name: z.string().regex(C_IDENT_RE, 'the C function name of the program'),
    hook: z.enum(HOOK_NAMES),
  })).min(1).max(MAX_PROGRAMS),
  persistentMaps: z.array(z.string().regex(C_IDENT_RE)).max(MAX_PERSISTENT_MAPS).optional(),
  counters: z.array(z.string().regex(C_IDENT_RE)).max(MAX_COUNTERS).optional(),
});

export interface ManifestFile {
  manifest: ModuleManifest;
  /** Path of the ELF object, relative to the manifest file. */
  object: string;
}

export function parseManifestFile(text: string, source: string): ManifestFile {
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (err) {
    throw new BpfleetError('INVALID_ARGUMENT', 'INVALID_MANIFEST', `${source}: not valid YAML: ${(err as Error).message}`);
  }
  const parsed = manifestFileSchema.safeParse(doc);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(manifest)'}: ${i.message}`);
    throw new BpfleetError('INVALID_ARGUMENT', 'INVALID_MANIFEST', `${source}: invalid module manifest:\n${lines.join('\n')}`);
  }
  const m = parsed.data;
  return {
    object: m.object,
    manifest: {
      name: m.name,
      version: m.version,
      description: m.description ?? '',
      programs: m.programs.map((p) => ({ name: p.name, hook: hookKind(p.hook) })),
      persistentMaps: m.persistentMaps ?? [],
      counters: m.counters ?? [],
    },
  };
}

/** Server-side check of a manifest from any gRPC client, not only the CLI. */
export function checkManifest(m: ModuleManifest | undefined): ModuleManifest {
  const problems: string[] = [];
  if (!m) throw new BpfleetError('INVALID_ARGUMENT', 'INVALID_MANIFEST', 'module manifest is missing');
  if (!NAME_RE.test(m.name)) problems.push(`name ${echo(m.name)}: lowercase letters, digits and dashes, at most 63`);
  if (!VERSION_RE.test(m.version)) problems.push(`version ${echo(m.version)}: a version such as 1.2.0, at most 64 characters`);
  if (Buffer.byteLength(m.description) > FIELD_BYTES.description) problems.push(`description: over the ${FIELD_BYTES.description}-byte limit`);
  if (m.programs.length === 0) problems.push('programs: at least one program');
  if (m.programs.length > MAX_PROGRAMS) problems.push(`programs: at most ${MAX_PROGRAMS}`);
  else {
    m.programs.forEach((p, i) => {
      if (!C_IDENT_RE.test(p.name)) problems.push(`programs[${i}].name ${echo(p.name)}: the C function name of the program`);
      if (!HOOK_KINDS.has(p.hook)) problems.push(`programs[${i}].hook: one of ${HOOK_NAMES.join(', ')}`);
    });
  }
  if (m.persistentMaps.length > MAX_PERSISTENT_MAPS) problems.push(`persistentMaps: at most ${MAX_PERSISTENT_MAPS}`);
  else m.persistentMaps.forEach((n, i) => { if (!C_IDENT_RE.test(n)) problems.push(`persistentMaps[${i}] ${echo(n)}: a C identifier`); });
  if (m.counters.length > MAX_COUNTERS) problems.push(`counters: at most ${MAX_COUNTERS}`);
  else m.counters.forEach((n, i) => { if (!C_IDENT_RE.test(n)) problems.push(`counters[${i}] ${echo(n)}: a C identifier`); });
  if (problems.length) {
    throw new BpfleetError('INVALID_ARGUMENT', 'INVALID_MANIFEST', `invalid module manifest:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  }
  return m;
}
