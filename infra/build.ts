/**
 * `npm run build`: compiles the three commands to JavaScript in dist/ with esbuild, so the
 * published package runs on plain Node 20 without tsx or TypeScript.
 *
 * - One ES module per command (dist/bpfleet.js, dist/bpfleet-control.js,
 *   dist/bpfleet-agent.js) plus shared chunks beside them. Code splitting keeps every
 *   `await import()` lazy, which is what makes `bpfleet --help` quick: the CLI loads a noun's
 *   code (gRPC, protobuf, zod, X.509) only when that noun runs.
 * - bpfleet's own code and commander are bundled; every other npm dependency stays an import
 *   resolved from node_modules at run time. koffi is native, etcd3, grpc-health-check and
 *   proto-loader read files next to their own code, pino starts worker threads by path:
 *   bundling any of them would break them, and the rest gains little once --help loads none of
 *   them. commander is pure JavaScript that every command loads first: bundled, it costs
 *   half its start-up time (no module resolution of its eight files).
 * - Every package left external must be a "dependencies" entry of package.json, or the
 *   installed package would miss it: the build fails naming it.
 * - Not minified: stack traces from a daemon stay readable.
 * - The chunks sit directly in dist/ because common/grpc-standard.ts finds the .proto files
 *   at ../proto relative to its own module, in the sources and the bundle alike.
 * - The version and git commit are stamped in as __BPFLEET_BUILD__ (common/version.ts).
 */
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';
import { buildInfo, type BuildInfo } from '../common/version.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * What dist/ holds: the package's commands (bin name → TypeScript entry point; package.json
 * "bin" runs bin/<name>.mjs) and `bpfleet dev`'s two programs (bin/bpfleet.mjs hands `bpfleet
 * dev` to bpfleet-dev; it starts bpfleet-dev-supervisor in the background, dev/programs.ts).
 */
export const ENTRY_POINTS = {
  bpfleet: 'control/cli/main.ts',
  'bpfleet-control': 'control/main.ts',
  'bpfleet-agent': 'agent/main.ts',
  'bpfleet-dev': 'dev/dev-cli/main.ts',
  'bpfleet-dev-supervisor': 'dev/dev-cli/supervisor.ts',
} as const;

/** Packages compiled into dist/ rather than resolved from node_modules (see above). */
const BUNDLED_PACKAGES = new Set(['commander']);

/** "@grpc/grpc-js" for "@grpc/grpc-js/build/src/x", "yaml" for "yaml". */
export function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

/** Leaves npm packages external (but BUNDLED_PACKAGES), failing on any not in "dependencies". */
function externalDependencies(dependencies: Set<string>): Plugin {
  return {
    name: 'external-dependencies',
    setup(b) {
      b.onResolve({ filter: /^[^./]/ }, (args) => {
        if (args.path.startsWith('node:')) return { external: true };
        const name = packageName(args.path);
        if (BUNDLED_PACKAGES.has(name) || args.kind === 'entry-point') return undefined;
        if (!dependencies.has(name)) {
          return { errors: [{ text: `${args.importer} imports "${args.path}", but "${name}" is not in package.json "dependencies": the installed package would not have it` }] };
        }
        return { external: true };
      });
    },
  };
}

/**
 * Builds dist/ from scratch; returns the build info stamped into it: this checkout's
 * (package.json version, git commit) unless `info` names another (a test's bumped version).
 */
export async function buildDist(outdir = `${ROOT}dist`, info: BuildInfo = buildInfo()): Promise<BuildInfo> {
  const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { dependencies: Record<string, string> };
  await rm(outdir, { recursive: true, force: true });
  await build({
    absWorkingDir: ROOT,
    entryPoints: ENTRY_POINTS,
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    plugins: [externalDependencies(new Set(Object.keys(pkg.dependencies)))],
    // commander is CommonJS and require()s Node built-ins, which an ES module has no require for.
    banner: { js: "import { createRequire as __bpfleetCreateRequire } from 'node:module';\nconst require = __bpfleetCreateRequire(import.meta.url);" },
    chunkNames: 'chunk-[hash]',
    define: { __BPFLEET_BUILD__: JSON.stringify(info) },
    logLevel: 'warning',
  });
  return info;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const info = await buildDist();
  process.stdout.write(`build: dist/ for bpfleet ${info.version}${info.commit ? ` (commit ${info.commit})` : ''}\n`);
}
