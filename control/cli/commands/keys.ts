import type { Command } from 'commander';
import { createKeyFiles } from '../key-files.js';

/** `bpfleet keys create`. */
export function registerKeyCommands(program: Command): void {
  const keys = program.command('keys').description('module signing keys (ed25519)');
  keys.command('create')
    .description('create a signing key pair: <prefix>.private.pem (mode 0600) and <prefix>.public.pem')
    .requiredOption('--out <prefix>', 'path prefix of the two files, e.g. keys/release')
    .addHelpText('after', `
Sign modules with the private key (bpfleet module sign <manifest> --key <prefix>.private.pem);
put the public key in each agent's --trusted-keys directory.`)
    .action(async (opts: { out: string }) => {
      const k = await createKeyFiles(opts.out);
      process.stdout.write(`key ${k.keyId}\n  private: ${k.privatePath} (keep it secret)\n  public:  ${k.publicPath} (copy into agents' --trusted-keys directory)\n`);
    });
}
