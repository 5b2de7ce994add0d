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
import type { Etcd3 } from 'etcd3';
import type { HostDirectory } from '../../common/etcd/hosts.js';
import { codecs } from '../../common/etcd/codec.js';
import { listPrefix } from '../../common/etcd/watch.js';
import { keys } from '../../common/keys.js';
import type { Intent } from '../../proto/gen/bpfleet/v1/agent.js';
import { describeUses, versionUses } from '../day2/retire-rules.js';
import type { RetiredVersions } from '../store/retired.js';
import type { RolloutStore } from '../store/rollouts.js';

/** Every host's intents (the desired state a retire must not pull an object from under). */
async function listIntents(etcd: Etcd3): Promise<Intent[]> {
  return [...(await listPrefix(etcd, keys.intentsPrefix, codecs.intent.decode)).items.values()];
}

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
  etcd: Etcd3;
  artifacts: ArtifactStore;
  modules: ModuleRegistry;
  retired: RetiredVersions;
  rollouts: RolloutStore;
  hosts: HostDirectory;
  audit: AuditLog;
  log: Logger;
  clock: () => Date;
}

type ModuleHandlers = Pick<ControlServiceServer, 'pushModule' | 'listModules' | 'retireModule'>;

/** A request's module name and version: present, and within their limits. */
function requireVersion(name: string, version: string): { name: string; version: string } {
  if (!name || !version) throw new BpfleetError('INVALID_ARGUMENT', 'USAGE', 'a module name and a version are required');
  return { name: bounded('name', name, FIELD_BYTES.name), version: bounded('version', version, FIELD_BYTES.version) };
}

/**
 * PushModule, ListModules and RetireModule. A push checks the manifest, the object (a BPF ELF within
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
      const retired = await deps.retired.get(m.name, m.version);
      if (retired) throw new BpfleetError('ALREADY_EXISTS', 'VERSION_RETIRED', `${what} was retired by ${retired.by} at ${retired.at}; a retired version is never reused, push a new version`);
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

    retireModule: unary(log, 'RetireModule', async (call) => {
      const { name, version } = requireVersion(call.request.name, call.request.version);
      const reason = bounded('reason', call.request.reason, FIELD_BYTES.reason);
      const what = `${name}@${version}`;
      const found = await deps.modules.get(name, version);
      if (!found) {
        const retired = await deps.retired.get(name, version);
        if (retired) throw new BpfleetError('NOT_FOUND', 'VERSION_RETIRED', `${what} was already retired by ${retired.by} at ${retired.at}`);
      }
      const module = found ?? await deps.modules.require(name, version); // MODULE_NOT_FOUND naming the known versions
      const actor = actorOf(call);
      // The tombstone first: from here no rollout of the version can be created (RolloutStore
      // checks it in its create transaction), so the uses read next cannot grow before the delete.
      if (!(await deps.retired.claim(name, version, { at: deps.clock().toISOString(), by: actor, digest: module.digest, ...(reason ? { reason } : {}) }))) {
        throw new BpfleetError('ABORTED', 'CONTENDED', `${what} is being retired by another request`);
      }
      try {
        const [hosts, intents, rollouts] = await Promise.all([deps.hosts.list(), listIntents(deps.etcd), deps.rollouts.unfinished()]);
        const uses = describeUses(versionUses(name, version, { hosts, intents, rollouts }));
        if (uses) throw new BpfleetError('FAILED_PRECONDITION', 'VERSION_IN_USE', `cannot retire ${what}: ${uses}; roll those hosts to another version (or drain them) first`);
      } catch (err) {
        await deps.retired.release(name, version);
        throw err;
      }
      await deps.etcd.delete().key(keys.module(name, version));
      // Another version may be the very same object (same digest): keep it for that one.
      const shared = (await deps.modules.list()).some((m) => m.digest === module.digest);
      const objectDeleted = shared ? false : await deps.artifacts.delete(module.digest);
      await deps.audit.record(actor, 'module.retire', what, { digest: module.digest, objectDeleted, ...(reason ? { reason } : {}) });
      return { module, objectDeleted };
    }),

    listModules: unary(log, 'ListModules', async (call) => ({ modules: await deps.modules.list(bounded('name', call.request.name, FIELD_BYTES.name) || undefined) })),
  };
}
