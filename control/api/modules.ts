import type { ArtifactStore } from '../../common/artifacts.js';
import { DIGEST_RE, digestOf } from '../../common/digest.js';
import { BpfleetError } from '../../common/errors.js';
import { bounded, echo, FIELD_BYTES } from '../../common/limits.js';
import type { Logger } from '../../common/log.js';
import { checkManifest, MAX_OBJECT_BYTES } from '../../common/manifest.js';
import { checkSignatureFields } from '../../common/signing.js';
import { requireBpfElf } from '../../common/elf.js';
import type { ControlServiceServer } from '../../proto/gen/bpfleet/v1/control.js';
import { ModuleManifest, type Module } from '../../proto/gen/bpfleet/v1/module.js';
import type { AuditLog } from '../store/audit.js';
import type { ModuleRegistry } from '../../common/etcd/modules.js';
import { actorOf, unary } from './handler.js';

/**
 * A version is immutable: pushing name@version again is accepted only with the same object
 * and the same manifest (a no-op, `created: false`); anything else is ALREADY_EXISTS/
 * VERSION_EXISTS naming what differs (the digest, or the manifest's fields).
 */
export function refuseChange(existing: Module, manifest: ModuleManifest, digest: string): void {
  const what = `${manifest.name}@${manifest.version}`;
  const differs: string[] = [];
  if (existing.digest !== digest) differs.push(`object (stored ${existing.digest}, pushed ${digest})`);
  const stored = ModuleManifest.toJSON(existing.manifest ?? ModuleManifest.fromPartial({})) as Record<string, unknown>;
  const pushed = ModuleManifest.toJSON(manifest) as Record<string, unknown>;
  const fields = [...new Set([...Object.keys(stored), ...Object.keys(pushed)])];
  const changed = fields.filter((f) => JSON.stringify(stored[f]) !== JSON.stringify(pushed[f]));
  if (changed.length) differs.push(`manifest ${changed.join(', ')}`);
  if (differs.length) {
    throw new BpfleetError('ALREADY_EXISTS', 'VERSION_EXISTS', `module ${what} already exists and differs in its ${differs.join(' and its ')}; versions are immutable, push a new version`);
  }
}

export interface ModuleDeps {
  artifacts: ArtifactStore;
  modules: ModuleRegistry;
  audit: AuditLog;
  log: Logger;
  clock: () => Date;
}

type ModuleHandlers = Pick<ControlServiceServer, 'pushModule' | 'listModules'>;

/**
 * PushModule and ListModules. A push checks the manifest, the object (a BPF ELF within
 * MAX_OBJECT_BYTES), the signature fields and the digest before storing anything; a
 * version is immutable, so pushing it again with other bytes is ALREADY_EXISTS.
 */
export function moduleHandlers(deps: ModuleDeps): ModuleHandlers {
  const { log } = deps;
  return {
    pushModule: unary(log, 'PushModule', async (call) => {
      const { manifest, object, digest, signature, keyId } = call.request;
      const m = checkManifest(manifest);
      const what = `${m.name}@${m.version}`;
      if (object.length === 0) throw new BpfleetError('INVALID_ARGUMENT', 'EMPTY_OBJECT', `${what}: the object is empty`);
      if (object.length > MAX_OBJECT_BYTES) throw new BpfleetError('INVALID_ARGUMENT', 'OBJECT_TOO_LARGE', `${what}: ${object.length} bytes is over the ${MAX_OBJECT_BYTES}-byte limit`);
      requireBpfElf(object, what);
      checkSignatureFields(signature, keyId, what);
      const actual = digestOf(object);
      if (digest && !DIGEST_RE.test(digest)) throw new BpfleetError('INVALID_ARGUMENT', 'BAD_DIGEST', `${what}: digest ${echo(digest)} is not sha256:<64 hex>`);
      if (digest && digest !== actual) {
        throw new BpfleetError('INVALID_ARGUMENT', 'DIGEST_MISMATCH', `${what}: object digest is ${actual}, the request said ${digest}`);
      }
      const existing = await deps.modules.get(m.name, m.version);
      if (existing) refuseChange(existing, m, actual);
      const stored = await deps.artifacts.put(object);
      const result = await deps.modules.create({
        manifest: m, digest: actual, size: object.length, objectKey: stored.key,
        pushedAt: deps.clock().toISOString(), pushedBy: actorOf(call), signature, keyId,
      });
      // Another push of the same version may have won the race since the read above.
      if (!result.created) refuseChange(result.module, m, actual);
      if (result.created) await deps.audit.record(actorOf(call), 'module.push', what, { digest: actual });
      return { module: result.module, created: result.created };
    }),

    listModules: unary(log, 'ListModules', async (call) => ({ modules: await deps.modules.list(bounded('name', call.request.name, FIELD_BYTES.name) || undefined) })),
  };
}
