/**
 * The `bpfleet` program. Its nouns (module, rollout, hosts, keys, pki) are registered lazily:
 * only the noun named on the command line is imported, so `bpfleet --help` and `bpfleet
 * version` load commander and this file, not gRPC, protobuf, zod or X.509 (those cost about
 * a second of start-up; bench/cli-start.ts measures it).
 */
import { Command } from 'commander';
import { DEFAULT_SERVER } from './default-server.js';
import { EXIT } from './exit-codes.js';
import { inert } from './inert.js';
import { traceCommand } from './tracing.js';

type Register = (program: Command) => void;

/** Each noun: its one-line description for the overview, and how to load its commands. */
export const NOUNS: Record<string, { description: string; load: () => Promise<Register> }> = {
  module: { description: 'push, list, sign and retire module versions', load: async () => (await import('./commands/module.js')).registerModuleCommands },
  rollout: { description: 'create, follow and inspect rollouts', load: async () => (await import('./commands/rollout.js')).registerRolloutCommands },
  hosts: { description: 'list registered hosts, what each runs and where it lags; drain, undrain and decommission them', load: async () => (await import('./commands/hosts.js')).registerHostCommands },
  keys: { description: 'module signing keys (ed25519)', load: async () => (await import('./commands/keys.js')).registerKeyCommands },
  pki: { description: 'fleet PKI for mutual TLS: the CA, and certificates for the control plane, agents and users', load: async () => (await import('./commands/pki.js')).registerPkiCommands },
};

/** `bpfleet dev`'s line in the overview (its commands: dev/dev-cli/main.ts). */
export const DEV_DESCRIPTION = 'a local fleet on this machine to try bpfleet against: dev up | down | status | env';

/** The global options that take a value (skipped with it when looking for the noun). */
const VALUE_OPTIONS: ReadonlySet<string> = new Set(['-s', '--server', '--tls-ca', '--tls-cert', '--tls-key', '--context']);

/**
 * The noun `argv` (process.argv shape) invokes, skipping global options: "rollout" for
 * `bpfleet -s a:1 --tls-ca ca.crt rollout get r-1` and for `bpfleet help rollout`; null for none.
 */
export function invokedNoun(argv: readonly string[]): string | null {
  const words: string[] = [];
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i]!;
    if (VALUE_OPTIONS.has(a)) i++;
    else if (!a.startsWith('-')) words.push(a);
  }
  const noun = words[0] === 'help' ? words[1] : words[0];
  return noun !== undefined && Object.hasOwn(NOUNS, noun) ? noun : null;
}

/**
 * The `bpfleet` program with every noun's commands loaded when `nouns` is "all", else only
 * `nouns` loaded and the others as one-line entries for the overview help.
 */
export async function buildCli(nouns: readonly string[] | 'all' = 'all'): Promise<Command> {
  const program = new Command('bpfleet')
    .description('Roll eBPF modules out across a fleet: canary first, waves gated on live telemetry, atomic rollback.')
    .option('-s, --server <addr>', `control plane gRPC address; a comma-separated list of replicas fails over (env BPFLEET_SERVER, or the context's server; default ${DEFAULT_SERVER})`)
    .option('--tls-ca <file>', 'fleet CA bundle to verify the control plane (env BPFLEET_CA, or the context\'s ca)')
    .option('--tls-cert <file>', 'your client certificate, from `bpfleet pki issue user` (env BPFLEET_CERT, or the context\'s cert)')
    .option('--tls-key <file>', 'its private key (env BPFLEET_KEY, or the context\'s key)')
    .option('--context <name>', `context of the config file to use (default: its current-context; file: $BPFLEET_CONFIG or ~/.config/bpfleet/config.yaml)`)
    .option('--insecure', 'connect without TLS, to a control plane started with --insecure (experiments only)')
    .showHelpAfterError()
    // Names only in the overview: a noun that is not loaded cannot say what it takes.
    .configureHelp({ subcommandTerm: (cmd) => cmd.name() })
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
3 rolled back, 4 failed or aborted, 5 timeout, 6 paused, 7 not found, 8 verb recorded but not applied.
Every command takes -o json|yaml; \`bpfleet <command> --help\` has examples.`);

  for (const [name, noun] of Object.entries(NOUNS)) {
    if (nouns === 'all' || nouns.includes(name)) (await noun.load())(program);
    else program.command(name).description(noun.description);
  }
  // bin/bpfleet.mjs hands `bpfleet dev ...` and `bpfleet help dev` to dev/dev-cli (control/
  // never imports dev/); this entry only names it in the overview, and explains a misplaced one.
  program.command('dev')
    .description(DEV_DESCRIPTION)
    .allowUnknownOption().allowExcessArguments()
    .action(() => {
      process.stderr.write('bpfleet: `dev` must come first, without global options: bpfleet dev up|down|status|env\n');
      process.exitCode = EXIT.USAGE;
    });
  program.command('version')
    .description('print the bpfleet version and the git commit it was built from')
    .action(async () => {
      const { versionLine } = await import('../../common/version.js');
      process.stdout.write(`${versionLine('bpfleet')}\n`);
    });
  return program;
}

/** Runs the CLI on `argv` (process.argv shape); sets process.exitCode, prints errors to stderr. */
export async function main(argv: string[]): Promise<void> {
  const noun = invokedNoun(argv);
  const program = (await buildCli(noun ? [noun] : [])).exitOverride((err) => {
    process.exit(err.exitCode === 0 ? 0 : EXIT.USAGE);
  });
  await traceCommand(program, async () => {
    try {
      await program.parseAsync(argv);
    } catch (err) {
      const [{ BpfleetError }, { exitCodeForError }] = await Promise.all([import('../../common/errors.js'), import('./exit-for.js')]);
      const e = err instanceof BpfleetError ? err : null;
      const unreachable = e?.code === 'UNAVAILABLE' ? ` (is the control plane running at ${String(program.opts().server ?? process.env.BPFLEET_SERVER ?? DEFAULT_SERVER)}, and does it trust your certificate? set --server or BPFLEET_SERVER)` : '';
      process.stderr.write(`bpfleet: ${inert((err as Error).message)}${unreachable}\n`);
      if (e?.detail) process.stderr.write(`${inert(e.detail)}\n`);
      process.exitCode = exitCodeForError(err);
    }
  });
}
