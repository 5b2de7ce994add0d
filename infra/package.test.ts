/**
 * The quick check of the npm package (the full one, installing the tarball into an empty
 * prefix, is infra/package-install.test.ts, also in the suite; `npm run test:package`):
 * `npm pack --dry-run` lists what the tarball holds, and the built commands run through
 * their bin launchers from a directory laid out like the installed package (no TypeScript
 * sources beside them, so the launchers pick dist/).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { buildDist, packageName } from './build.js';
import { buildInfo, versionLine, type BuildInfo } from '../common/version.js';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('..', import.meta.url));
const PACKAGE_VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

/** The files `entry` (in `dir`) loads through static imports, and the npm packages they import. */
function staticImports(dir: string, entry: string): { chunks: string[]; packages: string[] } {
  const chunks = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string): void => {
    if (chunks.has(file)) return;
    chunks.add(file);
    // esbuild writes one static import per statement: `import {...} from "x";` or `import "x";`.
    for (const [, spec] of readFileSync(join(dir, file), 'utf8').matchAll(/^import\s+(?:[^;]*?\sfrom\s+)?["']([^"']+)["'];?$/gm)) {
      if (spec!.startsWith('./')) visit(spec!.slice(2));
      else if (!spec!.startsWith('node:')) packages.add(spec!);
    }
  };
  visit(entry);
  return { chunks: [...chunks], packages: [...packages] };
}

describe('the npm package, quickly', { timeout: 120_000 }, () => {
  const stage = mkdtempSync(join(tmpdir(), 'bpfleet-package-'));
  let built: BuildInfo;
  before(async () => {
    built = await buildDist(join(stage, 'dist'));
    cpSync(join(REPO, 'bin'), join(stage, 'bin'), { recursive: true });
    cpSync(join(REPO, 'package.json'), join(stage, 'package.json'));
    symlinkSync(join(REPO, 'node_modules'), join(stage, 'node_modules'));
  });
  after(() => rmSync(stage, { recursive: true, force: true }));

  it('npm pack would ship the launchers, dist/, the .proto files, units and example configs; no TypeScript or tests', async () => {
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: REPO, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
    const files = (JSON.parse(stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
    for (const f of ['bin/bpfleet.mjs', 'bin/bpfleet-agent.mjs', 'bin/bpfleet-control.mjs', 'bin/launch.mjs', 'proto/bpfleet/v1/control.proto', 'proto/descriptors.binpb',
      'infra/systemd/bpfleet-agent.service', 'infra/systemd/bpfleet-control.service', 'infra/config/agent.yaml', 'infra/config/control.yaml']) {
      assert.ok(files.includes(f), `${f} is missing from the package`);
    }
    assert.deepEqual(files.filter((f) => f.endsWith('.ts') || f.endsWith('.o') || f.includes('test')), []);
  });

  for (const name of ['bpfleet', 'bpfleet-agent', 'bpfleet-control']) {
    it(`${name}: --help and version from dist/; the version is package.json's`, async () => {
      const bin = join(stage, 'bin', `${name}.mjs`);
      assert.match((await run(process.execPath, [bin, '--help'], { cwd: stage, encoding: 'utf8' })).stdout, new RegExp(`^Usage: ${name} `));
      const { stdout } = await run(process.execPath, [bin, 'version'], { cwd: stage, encoding: 'utf8' });
      assert.equal(stdout, `${versionLine(name, built)}\n`);
      assert.ok(stdout.startsWith(`${name} ${PACKAGE_VERSION} `) || stdout === `${name} ${PACKAGE_VERSION}\n`, stdout);
    });
  }

  // What `bpfleet --help` and `bpfleet version` load is what dist/bpfleet.js imports statically:
  // node built-ins and bpfleet's own chunks only (commander is bundled). An npm package there
  // (gRPC, X.509, zod...) costs hundreds of ms of start-up; bench/cli-start.ts measures it.
  it('dist/bpfleet.js loads no npm package before a noun asks for one', () => {
    const { chunks, packages } = staticImports(join(stage, 'dist'), 'bpfleet.js');
    assert.deepEqual(packages, [], `reached through ${chunks.join(', ')}`);
  });

  it('bpfleet dev runs from dist/', async () => {
    const bin = join(stage, 'bin', 'bpfleet.mjs');
    assert.match((await run(process.execPath, [bin, 'dev', '--help'], { cwd: stage, encoding: 'utf8' })).stdout, /^Usage: bpfleet dev /);
    assert.match((await run(process.execPath, [bin, 'help', 'dev'], { cwd: stage, encoding: 'utf8' })).stdout, /^Usage: bpfleet dev /);
  });

  it('the sources report the same version as the build: one source, package.json', () => {
    assert.deepEqual(buildInfo(), built);
    assert.equal(built.version, PACKAGE_VERSION);
  });

  it('packageName: the npm package a bare import comes from', () => {
    assert.equal(packageName('@grpc/grpc-js/build/src/x'), '@grpc/grpc-js');
    assert.equal(packageName('yaml'), 'yaml');
    assert.equal(packageName('zod/v4/core'), 'zod');
  });
});
