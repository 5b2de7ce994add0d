import YAML from 'yaml';
import { z } from 'zod';
import { HookKind, type ModuleManifest } from '../proto/gen/bpfleet/v1/module.js';
import { HOOK_NAMES, hookKind } from './attachment.js';
import { BpfleetError } from './errors.js';

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const VERSION_RE = /^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$/;
const C_IDENT_RE = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

/**
 * Largest module object accepted. Real BPF objects are kilobytes to a few megabytes; the
 * limit keeps a mistaken push (a binary, an archive) from reaching the gRPC size limit.
 */
export const MAX_OBJECT_BYTES = 3 * 1024 * 1024;

/** A module's description, in characters: text for people, shown by the CLI, not a document. */
export const MAX_DESCRIPTION_CHARS = 1024;

/** Slots in the `bpfleet_counters` map (see agent/bpf/bpfleet.h). */
export const MAX_COUNTERS = 8;

/** The manifest file a module author writes next to the object (YAML). */
const manifestFileSchema = z.strictObject({
  name: z.string().regex(NAME_RE, 'lowercase letters, digits and dashes'),
  version: z.string().regex(VERSION_RE, 'a version such as 1.2.0'),
  object: z.string().min(1),
  description: z.string().max(MAX_DESCRIPTION_CHARS).optional(),
  programs: z.array(z.strictObject({
    name: z.string().regex(C_IDENT_RE, 'the C function name of the program'),
    hook: z.enum(HOOK_NAMES),
  })).min(1),
  persistentMaps: z.array(z.string().regex(C_IDENT_RE)).optional(),
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
  if (!NAME_RE.test(m.name)) problems.push(`name "${m.name}": lowercase letters, digits and dashes`);
  if (!VERSION_RE.test(m.version)) problems.push(`version "${m.version}": a version such as 1.2.0`);
  if (m.programs.length === 0) problems.push('programs: at least one program');
  m.programs.forEach((p, i) => {
    if (!C_IDENT_RE.test(p.name)) problems.push(`programs[${i}].name "${p.name}": the C function name of the program`);
    if (p.hook === HookKind.HOOK_KIND_UNSPECIFIED) problems.push(`programs[${i}].hook: one of ${HOOK_NAMES.join(', ')}`);
  });
  if (m.counters.length > MAX_COUNTERS) problems.push(`counters: at most ${MAX_COUNTERS}`);
  if (m.description.length > MAX_DESCRIPTION_CHARS) problems.push(`description: ${m.description.length} characters; at most ${MAX_DESCRIPTION_CHARS}`);
  if (problems.length) {
    throw new BpfleetError('INVALID_ARGUMENT', 'INVALID_MANIFEST', `invalid module manifest:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  }
  return m;
}
