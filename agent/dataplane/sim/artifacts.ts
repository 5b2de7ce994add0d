import { hookKind, type HookName } from '../../../common/attachment.js';
import { digestOf } from '../../../common/digest.js';
import { syntheticElf } from '../../../common/elf.js';
import type { ModuleArtifact } from '../driver.js';

export interface SimModuleSpec {
  name: string;
  version: string;
  hook?: HookName;
  counters?: string[];
  persistentMaps?: string[];
  /** Defaults to a synthetic BPF ELF unique to name@version. */
  object?: Uint8Array;
}

/** A module artifact as the agent would hand it to a driver, digest included. */
export function simArtifact(spec: SimModuleSpec): ModuleArtifact {
  const object = spec.object ?? syntheticElf({ payload: `${spec.name}@${spec.version}` });
  return {
    manifest: {
      name: spec.name,
      version: spec.version,
      programs: [{ name: spec.name.replace(/\W/g, '_'), hook: hookKind(spec.hook ?? 'xdp') }],
      persistentMaps: spec.persistentMaps ?? [],
      counters: spec.counters ?? ['packets'],
      description: '',
    },
    digest: digestOf(object),
    object,
  };
}
