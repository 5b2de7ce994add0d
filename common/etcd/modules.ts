import type { Etcd3 } from 'etcd3';
import type { Module } from '../../proto/gen/bpfleet/v1/module.js';
import { BpfleetError } from '../errors.js';
import { keys } from '../keys.js';
import { codecs } from './codec.js';
import { decodeOrSkip } from './malformed.js';
import { scanPrefix } from './batch.js';

/** Module versions are immutable: a name@version, once stored, always means one digest. */
export class ModuleRegistry {
  constructor(private readonly etcd: Etcd3) {}

  /** Stores the module unless that name@version exists; returns whether it was created. */
  async create(module: Module): Promise<{ module: Module; created: boolean }> {
    const m = module.manifest!;
    const key = keys.module(m.name, m.version);
    const txn = await this.etcd
      .if(key, 'Create', '==', 0)
      .then(this.etcd.put(key).value(codecs.module.encode(module)))
      .else(this.etcd.get(key))
      .commit();
    if (txn.succeeded) return { module, created: true };
    const existingKv = txn.responses[0]?.response_range?.kvs[0];
    const existing = decodeOrSkip(key, existingKv!.value.toString(), codecs.module.decode);
    if (!existing) throw new BpfleetError('ALREADY_EXISTS', 'VERSION_EXISTS', `module ${m.name}@${m.version}: its key holds a malformed value; push a new version`);
    if (existing.digest !== module.digest) {
      throw new BpfleetError('ALREADY_EXISTS', 'VERSION_EXISTS',
        `module ${m.name}@${m.version} already exists with digest ${existing.digest}; versions are immutable, push a new version`);
    }
    return { module: existing, created: false };
  }

  /** The module; null when absent or its value does not decode (reported as malformed). */
  async get(name: string, version: string): Promise<Module | null> {
    const key = keys.module(name, version);
    const text = await this.etcd.get(key).string();
    return text === null ? null : decodeOrSkip(key, text, codecs.module.decode);
  }

  async require(name: string, version: string): Promise<Module> {
    const module = await this.get(name, version);
    if (!module) {
      const known = (await this.list(name)).map((m) => m.manifest!.version);
      const hint = known.length ? ` (known versions: ${known.join(', ')})` : ' (no version of it was ever pushed: run `bpfleet module push` first)';
      throw new BpfleetError('NOT_FOUND', 'MODULE_NOT_FOUND', `module ${name}@${version} not found${hint}`);
    }
    return module;
  }

  /** Every version of `name` (default: of every module), in key order; values that do not decode are skipped and reported. */
  async list(name?: string): Promise<Module[]> {
    const prefix = name ? keys.moduleVersions(name) : keys.modulesPrefix;
    const { kvs } = await scanPrefix(this.etcd, prefix);
    return kvs.map((kv) => decodeOrSkip(kv.key.toString(), kv.value.toString(), codecs.module.decode)).filter((m): m is Module => m !== null);
  }
}
