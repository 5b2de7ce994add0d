import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Command } from 'commander';
import { hookName } from '../../common/attachment.js';
import { shortDigest } from '../../common/digest.js';
import { BpfleetError } from '../../common/errors.js';
import { MAX_OBJECT_BYTES, parseManifestFile } from '../../common/manifest.js';
import { Host, ListHostsResponse, ListModulesResponse, ListRolloutsResponse, PushModuleResponse } from '../../proto/gen/bpfleet/v1/control.js';
import { Module } from '../../proto/gen/bpfleet/v1/module.js';
import { Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import { parseRolloutSpec, specToInput } from '../rollout/spec.js';
import { phaseName } from '../rollout/vocabulary.js';
import { DEFAULT_SERVER } from './client.js';
import { EXIT, exitCodeFor } from './exit-codes.js';
import { outputOption, parseTimeout, print, withControl, type Output } from './output.js';
import { followRollout, registerRolloutCommands } from './rollout-commands.js';
import { traceCommand } from './tracing.js';
import { describeRollout } from './rollout-view.js';
import { registerKeys } from './keys.js';
import { registerModuleSign, signatureForPush } from './sign.js';

export { exitCodeFor };

export function buildCli(): Command {
  const program = new Command('bpfleet')
    .description('Roll eBPF modules out across a fleet: canary first, waves gated on live telemetry, atomic rollback.')
    .option('-s, --server <addr>', 'control plane gRPC address; a comma-separated list of replicas fails over (env BPFLEET_SERVER)', process.env.BPFLEET_SERVER ?? DEFAULT_SERVER)
    .showHelpAfterError()
    .addHelpText('after', `
Examples:
  bpfleet module push agent/bpf/pass-counter-v2.yaml
  bpfleet rollout create -f rollout.yaml --wait          # exit 0 only if it succeeds
  bpfleet rollout get <id> --watch                       # live view on a terminal
  bpfleet rollout status <id> --timeout 5m               # for CI: exit code = outcome
  bpfleet rollout pause|resume|promote|abort <id>
  bpfleet rollout undo <id>                              # back to the version it replaced
  bpfleet rollout history --module pass-counter
  bpfleet hosts -o json
  bpfleet --server 10.0.0.1:50051,10.0.0.2:50051 rollout list   # any replica will do

Exit codes: 0 ok/succeeded, 1 error or server unreachable, 2 usage or invalid input,
3 rolled back, 4 failed or aborted, 5 timeout, 6 paused, 7 not found.
Every command takes -o json|yaml; \`bpfleet <command> --help\` has examples.`);

  const module = program.command('module').description('push and list module versions');
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
        const res = await ctl.call<unknown, PushModuleResponse>('pushModule', { manifest, object: bytes, digest: '', ...(await signatureForPush(objectPath, manifest, bytes)) });
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
        const res = await ctl.call<unknown, ListModulesResponse>('listModules', { name: name ?? '' });
        print(opts.output, ListModulesResponse.toJSON(res), () => res.modules.length
          ? res.modules.map((m: Module) => `${`${m.manifest!.name}@${m.manifest!.version}`.padEnd(28)} ${shortDigest(m.digest)}  ${m.manifest!.programs.map((p) => `${p.name}:${hookName(p.hook)}`).join(',')}  ${m.pushedAt}`).join('\n')
          : 'no modules pushed yet');
      });
    });

  registerModuleSign(module);

  const rollout = program.command('rollout').description('create, follow and inspect rollouts');
  rollout.command('create')
    .description('start a rollout from a spec file')
    .requiredOption('-f, --file <spec>', 'rollout spec (YAML); "-" reads standard input')
    .option('--wait', 'follow the rollout and exit with its outcome (0 succeeded, 3 rolled back, 4 failed)')
    .option('--timeout <duration>', 'with --wait: give up after this long (exit 5); 0 waits forever', '10m')
    .addOption(outputOption())
    .addHelpText('after', `
A spec:
  module: pass-counter
  version: 2.0.0
  attachment: xdp:eth0
  selector: {role: edge}      # optional: hosts whose labels match
  steps:
    - canary: 1               # 1 host on the new version
    - bake: 10s               # wait, then compare canary vs baseline telemetry
    - percent: 100            # everyone else
  analysis:
    interval: 1s
    minSamples: 3
    metrics: [{name: drop_rate, max: 0.05, maxIncrease: 0.02}]
  onFailure: rollback         # or halt`)
    .action(async (opts: { file: string; wait?: boolean; timeout: string; output: Output }, cmd: Command) => {
      const text = opts.file === '-' ? await readStdin() : await readFile(opts.file, 'utf8');
      const spec = parseRolloutSpec(text);
      const timeoutMs = parseTimeout(opts.timeout);
      await withControl(cmd, async (ctl) => {
        const created = await ctl.call<unknown, Rollout>('createRollout', { spec });
        if (!opts.wait) {
          print(opts.output, Rollout.toJSON(created), () => `created rollout ${created.id}\nfollow it with: bpfleet rollout get ${created.id} --watch`);
          return;
        }
        process.exitCode = await followRollout(ctl, created.id, { format: opts.output, timeoutMs, view: 'changes' });
      });
    });
  rollout.command('get')
    .description('show a rollout: steps, hosts, analyses with their numbers')
    .argument('<id>', 'rollout id')
    .option('-w, --watch', 'follow it until it ends or pauses; exit code as for `rollout status`')
    .option('--timeout <duration>', 'with --watch: give up after this long (exit 5)', '0')
    .addOption(outputOption())
    .addHelpText('after', `
Examples:
  bpfleet rollout get <id>              # steps, hosts, every analysis with its numbers
  bpfleet rollout get <id> -o yaml      # everything, with the spec as you would write it
  bpfleet rollout get <id> --watch      # on a terminal: steps, a progress bar per wave and
                                        # the latest verdicts, redrawn in place; piped: a line
                                        # per change. Exits when the rollout ends or pauses:
                                        # 0 succeeded, 3 rolled back, 4 failed/aborted, 6 paused`)
    .action(async (id: string, opts: { watch?: boolean; timeout: string; output: Output }, cmd: Command) => {
      await withControl(cmd, async (ctl) => {
        if (opts.watch) {
          const view = process.stdout.isTTY ? 'live' : 'changes';
          process.exitCode = await followRollout(ctl, id, { format: opts.output, timeoutMs: parseTimeout(opts.timeout), view });
          return;
        }
        const r = await ctl.call<unknown, Rollout>('getRollout', { id });
        print(opts.output, { ...(Rollout.toJSON(r) as object), specYaml: specToInput(r.spec!) }, () => describeRollout(r));
      });
    });
  rollout.command('list')
    .description('list rollouts, oldest first')
    .option('--module <name>', 'only rollouts of this module')
    .addOption(outputOption())
    .addHelpText('after', `
Examples:
  bpfleet rollout list --module pass-counter
  bpfleet rollout list -o json | jq -r '.rollouts[] | select(.status.phase == "ROLLOUT_PHASE_PAUSED") | .id'`)
    .action(async (opts: { module?: string; output: Output }, cmd: Command) => {
      await withControl(cmd, async (ctl) => {
        const res = await ctl.call<unknown, ListRolloutsResponse>('listRollouts', { module: opts.module ?? '' });
        print(opts.output, ListRolloutsResponse.toJSON(res), () => res.rollouts.length
          ? res.rollouts.map((r) => `${r.id.padEnd(36)} ${`${r.spec!.module}@${r.spec!.version}`.padEnd(26)} ${phaseName(r.status?.phase).padEnd(12)} ${r.status?.message ?? ''}`).join('\n')
          : 'no rollouts yet');
      });
    });

  registerRolloutCommands(rollout);

  program.command('hosts')
    .description('list registered hosts and the module version each one runs')
    .addOption(outputOption())
    .addHelpText('after', `
Example:
  bpfleet hosts
  h1           127.0.0.1:40111      role=edge,zone=a     xdp:eth0=pass-counter@2.0.0(prog 2127)`)
    .action(async (opts: { output: Output }, cmd: Command) => {
      await withControl(cmd, async (ctl) => {
        const res = await ctl.call<unknown, ListHostsResponse>('listHosts', {});
        print(opts.output, ListHostsResponse.toJSON(res), () => res.hosts.length
          ? res.hosts.map((h: Host) => {
            const running = h.attachments.map((a) => `${a.attachment}=${a.module}@${a.version}(prog ${a.progId})`).join(' ') || '(nothing attached)';
            const labels = Object.entries(h.labels).map(([k, v]) => `${k}=${v}`).join(',');
            return `${h.name.padEnd(12)} ${h.address.padEnd(20)} ${labels.padEnd(20)} ${running}`;
          }).join('\n')
          : 'no hosts registered');
      });
    });
  registerKeys(program);
  return program;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export function exitCodeForError(err: unknown): number {
  if (!(err instanceof BpfleetError)) return EXIT.ERROR;
  if (err.code === 'INVALID_ARGUMENT' || err.code === 'ALREADY_EXISTS' || err.code === 'FAILED_PRECONDITION') return EXIT.USAGE;
  if (err.code === 'NOT_FOUND') return EXIT.NOT_FOUND;
  return EXIT.ERROR;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildCli().exitOverride((err) => {
    process.exit(err.exitCode === 0 ? 0 : EXIT.USAGE);
  });
  await traceCommand(program, async () => {
    try {
      await program.parseAsync(argv);
    } catch (err) {
      const e = err instanceof BpfleetError ? err : null;
      const unreachable = e?.code === 'UNAVAILABLE' ? ` (is the control plane running at ${String(program.opts().server ?? DEFAULT_SERVER)}? set --server or BPFLEET_SERVER)` : '';
      process.stderr.write(`bpfleet: ${(err as Error).message}${unreachable}\n`);
      if (e?.detail) process.stderr.write(`${e.detail}\n`);
      process.exitCode = exitCodeForError(err);
    }
  });
}
