import { Command } from 'commander';
import { BpfleetError } from '../../common/errors.js';
import { DEFAULT_SERVER } from './client.js';
import { registerHostCommands } from './commands/hosts.js';
import { registerKeyCommands } from './commands/keys.js';
import { registerModuleCommands } from './commands/module.js';
import { registerPkiCommands } from './commands/pki.js';
import { registerRolloutCommands } from './commands/rollout.js';
import { EXIT, exitCodeFor } from './exit-codes.js';
import { inert } from './inert.js';
import { traceCommand } from './tracing.js';

export { exitCodeFor };

/** The `bpfleet` program: the global --server option, the overview help and every command by noun. */
export function buildCli(): Command {
  const program = new Command('bpfleet')
    .description('Roll eBPF modules out across a fleet: canary first, waves gated on live telemetry, atomic rollback.')
    .option('-s, --server <addr>', `control plane gRPC address; a comma-separated list of replicas fails over (env BPFLEET_SERVER, or the context's server; default ${DEFAULT_SERVER})`)
    .option('--ca <file>', 'fleet CA bundle to verify the control plane (env BPFLEET_CA, or the context\'s ca)')
    .option('--cert <file>', 'your client certificate, from `bpfleet pki issue user` (env BPFLEET_CERT, or the context\'s cert)')
    .option('--key <file>', 'its private key (env BPFLEET_KEY, or the context\'s key)')
    .option('--context <name>', `context of the config file to use (default: its current-context; file: $BPFLEET_CONFIG or ~/.config/bpfleet/config.yaml)`)
    .option('--insecure', 'connect without TLS, to a control plane started with --insecure (experiments only)')
    .showHelpAfterError()
    .addHelpText('after', `
Examples:
  bpfleet --ca pki/ca.crt --cert pki/alice.crt --key pki/alice.key hosts   # or BPFLEET_CA/_CERT/_KEY, or a config context
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

  registerModuleCommands(program);
  registerRolloutCommands(program);
  registerHostCommands(program);
  registerKeyCommands(program);
  registerPkiCommands(program);
  return program;
}

/** Exit code for a command that failed with `err` (see exit-codes.ts). */
export function exitCodeForError(err: unknown): number {
  if (!(err instanceof BpfleetError)) return EXIT.ERROR;
  if (err.code === 'INVALID_ARGUMENT' || err.code === 'ALREADY_EXISTS' || err.code === 'FAILED_PRECONDITION') return EXIT.USAGE;
  if (err.code === 'NOT_FOUND') return EXIT.NOT_FOUND;
  return EXIT.ERROR;
}

/** Runs the CLI on `argv` (process.argv shape); sets process.exitCode, prints errors to stderr. */
export async function main(argv: string[]): Promise<void> {
  const program = buildCli().exitOverride((err) => {
    process.exit(err.exitCode === 0 ? 0 : EXIT.USAGE);
  });
  await traceCommand(program, async () => {
    try {
      await program.parseAsync(argv);
    } catch (err) {
      const e = err instanceof BpfleetError ? err : null;
      const unreachable = e?.code === 'UNAVAILABLE' ? ` (is the control plane running at ${String(program.opts().server ?? process.env.BPFLEET_SERVER ?? DEFAULT_SERVER)}, and does it trust your certificate? set --server or BPFLEET_SERVER)` : '';
      process.stderr.write(`bpfleet: ${inert((err as Error).message)}${unreachable}\n`);
      if (e?.detail) process.stderr.write(`${inert(e.detail)}\n`);
      process.exitCode = exitCodeForError(err);
    }
  });
}
