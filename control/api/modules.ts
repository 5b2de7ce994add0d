import type { ArtifactStore } from '../../common/artifacts.js';
import { DIGEST_RE, digestOf } from '../../common/digest.js';
import { BpfleetError } from '../../common/errors.js';
import { bounded, echo, FIELD_BYTES } from '../../common/limits.js';
import type { Logger } from '../../common/log.js';
import { checkManifest, MAX_OBJECT_BYTES } from '../../common/manifest.js';
import { checkSignatureFields } from '../../common/signing.js';
import { requireBpfElf } from '../../common/elf.js';
import type { ControlServiceServer } from '../../proto/gen/bpfleet/v1/control.js';
import type { AuditLog } from '../store/audit.js';
import type { ModuleRegistry } from '../../common/etcd/modules.js';
import { actorOf, unary } from './handler.js';

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
      if (existing && existing.digest !== actual) {
        throw new BpfleetError('ALREADY_EXISTS', 'VERSION_EXISTS', `module ${what} already exists with digest ${existing.digest}; versions are immutable, push a new version`);
      }
      const stored = await deps.artifacts.put(object);
      const result = await deps.modules.create({
        manifest: m, digest: actual, size: object.length, objectKey: stored.key,
        pushedAt: deps.clock().toISOString(), pushedBy: actorOf(call), signature, keyId,
      });
      if (result.created) await deps.audit.record(actorOf(call), 'module.push', what, { digest: actual });
      return { module: result.module, created: result.created };
    }),

    listModules: unary(log, 'ListModules', async (call) => ({ modules: await deps.modules.list(bounded('name', call.request.name, FIELD_BYTES.name) || undefined) })),
  };
}
