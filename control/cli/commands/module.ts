import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Command } from 'commander';
import { hookName } from '../../../common/attachment.js';
import { shortDigest } from '../../../common/digest.js';
import { BpfleetError } from '../../../common/errors.js';
import { MAX_OBJECT_BYTES, parseManifestFile } from '../../../common/manifest.js';
import { ListModulesResponse, PushModuleResponse, RetireModuleResponse } from '../../../proto/gen/bpfleet/v1/control.js';
import type { Module } from '../../../proto/gen/bpfleet/v1/module.js';
import { outputOption, print, withControl, type Output } from '../output.js';
import { signatureForPush, signModuleFiles } from '../signature-file.js';

/** `bpfleet module push|list|sign`. */
export function registerModuleCommands(program: Command): void {
  const module = program.command('module').description('push, list, sign and retire module versions');
  module.command('push')
    .description('push a module version: a manifest (YAML) naming its BPF ELF object')
    .argument('<manifest>', 'module manifest file, e.g. agent/bpf/pass-counter-v2.yaml')
    .addOption(outputOption())
    .addHelpText('after', `
The manifest:
  name: pass-counter          # lowercase, digits, dashes
  version: 2.0.0              # immutable once pushed
  object: build/pass-counter-v2.bpf.o   # relative to the manifest
  programs: [{name: pass_counter, hook: xdp}]   # hook: xdp | tcx-ingress | tcx-egress
  persistentMaps: [bpfleet_counters]   # kept across versions
  counters: [packets, bytes]           # slots of the bpfleet_counters map`)
    .action(async (path: string, opts: { output: Output }, cmd: Command) => {
      const { manifest, object } = parseManifestFile(await readFile(path, 'utf8'), path);
      const objectPath = resolve(dirname(path), object);
      const bytes = await readFile(objectPath).catch((err) => {
        throw new BpfleetError('INVALID_ARGUMENT', 'USAGE', `${path}: cannot read object ${objectPath}: ${(err as Error).message}`);
      });
      if (bytes.length > MAX_OBJECT_BYTES) {
        throw new BpfleetError('INVALID_ARGUMENT', 'OBJECT_TOO_LARGE', `${objectPath}: ${bytes.length} bytes is larger than the ${MAX_OBJECT_BYTES}-byte limit for a BPF object; is it the right file?`);
      }
      await withControl(cmd, async (ctl) => {
        const res = await ctl.call('pushModule', { manifest, object: bytes, digest: '', ...(await signatureForPush(objectPath, manifest, bytes)) });
        const m = res.module!;
        print(opts.output, PushModuleResponse.toJSON(res), () =>
          `${res.created ? 'pushed' : 'already present'}: ${m.manifest!.name}@${m.manifest!.version} ${m.digest} (${m.size} bytes)`);
      });
    });
  module.command('list')
    .description('list pushed module versions')
    .argument('[name]', 'only this module')
    .addOption(outputOption())
    .action(async (name: string | undefined, opts: { output: Output }, cmd: Command) => {
      await withControl(cmd, async (ctl) => {
        const res = await ctl.call('listModules', { name: name ?? '' });
        print(opts.output, ListModulesResponse.toJSON(res), () => res.modules.length
          ? res.modules.map((m: Module) => `${`${m.manifest!.name}@${m.manifest!.version}`.padEnd(28)} ${shortDigest(m.digest)}  ${m.manifest!.programs.map((p) => `${p.name}:${hookName(p.hook)}`).join(',')}  ${m.pushedAt}`).join('\n')
          : 'no modules pushed yet');
      });
    });
  module.command('retire')
    .description('delete a module version no host uses any more, and its object')
    .argument('<module>', 'module name, e.g. pass-counter')
    .argument('<version>', 'the version to retire, e.g. 1.0.0')
    .option('--reason <text>', 'why, for the audit log')
    .addOption(outputOption())
    .addHelpText('after', `
What it does:
  Deletes <module>@<version> from the registry and its object from the object store (kept
  when another version is the very same object), and records the retire in the audit log.
  A tombstone stays: the version can never be rolled out (VERSION_RETIRED) or pushed again.

Refused (exit 2, VERSION_IN_USE, naming them) while any host runs the version, any host's
intent names it, or an unfinished rollout rolls it out or would restore it on a rollback:
roll those hosts to another version (or drain them) first.

Exit codes: 0 retired, 2 refused, 7 no such version (or already retired).
Example:
  bpfleet module retire pass-counter 1.0.0 --reason "replaced by 2.0.0 everywhere"`)
    .action(async (name: string, version: string, opts: { reason?: string; output: Output }, cmd: Command) => {
      await withControl(cmd, async (ctl) => {
        const res = await ctl.call('retireModule', { name, version, reason: opts.reason ?? '' });
        print(opts.output, RetireModuleResponse.toJSON(res), () =>
          `retired: ${name}@${version} ${res.module?.digest ?? ''}${res.objectDeleted ? ' (object deleted)' : ' (object kept: another version is the same object)'}`);
      });
    });
  module.command('sign')
    .description('sign a module version (ed25519) before pushing it')
    .argument('<manifest>', 'module manifest file, e.g. agent/bpf/pass-counter-v2.yaml')
    .requiredOption('--key <private.pem>', 'private key from bpfleet keys create')
    .option('--out <file>', 'where to write the signature (default: <object>.sig, where module push looks)')
    .addHelpText('after', `
The signature covers name@version, the object's sha256 digest and the manifest, so it cannot
be replayed onto another version or a changed manifest. module push sends <object>.sig when
it exists; agents started with --require-signatures --trusted-keys <dir> refuse modules that
are unsigned (UNSIGNED), signed by a key not in <dir> (UNTRUSTED_KEY) or whose signature does
not verify (BAD_SIGNATURE). Versions are immutable: sign before the first push.`)
    .action(async (manifestPath: string, opts: { key: string; out?: string }) => {
      const s = await signModuleFiles(manifestPath, opts.key, opts.out);
      process.stdout.write(`signed ${s.digest} with ${s.keyId}: ${s.path}\n`);
    });
}
