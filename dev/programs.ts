/**
 * How dev/ starts bpfleet's own programs (the control plane, the agent, the dev fleet's
 * supervisor) in a checkout and in the installed package alike: in a checkout (the
 * TypeScript entry is there) through tsx, so what runs is what was just edited; in the
 * installed package, which has no sources and no tsx, its built dist/<name>.js on plain
 * Node (infra/build.ts builds one per entry). bin/launch.mjs makes the same choice for the
 * commands a user runs.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The checkout's root, or the installed package's (dist/'s chunks sit one level below it). */
export const PACKAGE_ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The built programs dev/ starts: dist/ name → TypeScript entry, relative to the root. */
export const DEV_PROGRAMS = {
  'bpfleet-control': 'control/main.ts',
  'bpfleet-agent': 'agent/main.ts',
  'bpfleet-dev-supervisor': 'dev/dev-cli/supervisor.ts',
} as const;

export type DevProgram = keyof typeof DEV_PROGRAMS;

/**
 * The command line that runs `program` from `root` (default PACKAGE_ROOT):
 * `[node, --import, tsx, <root>/<entry>.ts]` when the entry is there, else
 * `[node, <root>/dist/<program>.js]`. Arguments follow it.
 */
export function programCommand(program: DevProgram, root = PACKAGE_ROOT): { command: string; args: string[] } {
  const source = join(root, DEV_PROGRAMS[program]);
  return existsSync(source)
    ? { command: process.execPath, args: ['--import', 'tsx', source] }
    : { command: process.execPath, args: [join(root, 'dist', `${program}.js`)] };
}
