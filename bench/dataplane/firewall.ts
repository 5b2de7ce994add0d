/**
 * The firewall example module (agent/bpf/firewall-v1/-v2) as the benchmarks use it: read
 * from its manifest and object exactly as `bpfleet module push` would send them.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hookKind, type HookName } from '../../common/attachment.js';
import { digestOf } from '../../common/digest.js';
import { parseManifestFile } from '../../common/manifest.js';
import type { ModuleArtifact } from '../../agent/dataplane/driver.js';

const BPF_DIR = fileURLToPath(new URL('../../agent/bpf/', import.meta.url));

/** FIREWALL_BLOCKED_UDP_PORT in agent/bpf/firewall.h: both versions drop IPv4 UDP to it. */
export const BLOCKED_UDP_PORT = 9999;

export type FirewallVersion = 'v1' | 'v2';

/** Needs `make -C agent/bpf` (buildModules() in e2e/support/kernel-sandbox.ts). */
export function firewallModule(version: FirewallVersion): ModuleArtifact {
  const manifestPath = resolve(BPF_DIR, `firewall-${version}.yaml`);
  const { manifest, object } = parseManifestFile(readFileSync(manifestPath, 'utf8'), manifestPath);
  const bytes = readFileSync(resolve(dirname(manifestPath), object));
  return { manifest, digest: digestOf(bytes), object: bytes };
}

/** The name of the module's program for `hook`, as its manifest says. */
export function programFor(module: ModuleArtifact, hook: HookName): string {
  const program = module.manifest.programs.find((p) => p.hook === hookKind(hook));
  if (!program) throw new Error(`${module.manifest.name}@${module.manifest.version} has no program for hook ${hook}`);
  return program.name;
}
