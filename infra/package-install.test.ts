/**
 * The npm package: `npm pack` (which builds dist/ first) gives a tarball that installs with
 * `npm install -g` into an empty prefix, with its dependencies and no dev dependency (no
 * tsx, no TypeScript), and whose three commands run from there.
 *
 * With root, etcd and nats-server it also runs `bpfleet dev up` from the package (under CI=true
 * their absence fails).
 *
 * It takes 35-75 s on the 2-core machine, most of it npm install (dependencies from the npm
 * cache, package metadata from the registry); `npm run test:package` runs it alone.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { requirePrereqs } from '../e2e/support/prereqs.js';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('..', import.meta.url));

describe('the npm package', { timeout: 300_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'bpfleet-package-'));
  const prefix = join(dir, 'prefix');
  const installed = join(prefix, 'lib/node_modules/bpfleet');
  let files: string[] = [];
  // A clean environment: nothing may reach the checkout's node_modules or tsx.
  // (/usr/sbin: Debian's etcd, nats-server, ip and bpftool.)
  const env0 = { PATH: `${join(prefix, 'bin')}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin`, HOME: process.env.HOME ?? dir };
  const cmd = (name: string, ...args: string[]) => run(join(prefix, 'bin', name), args, { cwd: dir, env: env0, encoding: 'utf8' });

  before(async () => {
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: REPO, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
    const [pack] = JSON.parse(stdout.slice(stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[];
    files = pack!.files.map((f) => f.path);
    mkdirSync(prefix);
    await run('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', join(dir, pack!.filename)], { cwd: dir, encoding: 'utf8' });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('holds the built commands, the .proto files and the units; no TypeScript, tests or BPF objects', () => {
    for (const f of ['bin/bpfleet.mjs', 'bin/bpfleet-agent.mjs', 'bin/bpfleet-control.mjs', 'dist/bpfleet.js', 'dist/bpfleet-agent.js', 'dist/bpfleet-control.js',
      'dist/bpfleet-dev.js', 'dist/bpfleet-dev-supervisor.js', 'proto/bpfleet/v1/control.proto', 'proto/descriptors.binpb', 'infra/systemd/bpfleet-agent.service', 'infra/config/agent.yaml']) {
      assert.ok(files.includes(f), `${f} is missing from the package`);
    }
    assert.deepEqual(files.filter((f) => f.endsWith('.ts') || f.endsWith('.o') || f.includes('test')), []);
  });

  it('installs without any dev dependency', () => {
    const deps = readdirSync(join(installed, 'node_modules'));
    for (const dev of ['tsx', 'typescript', 'esbuild', 'ts-proto', '@bufbuild/buf']) assert.ok(!deps.includes(dev) && !existsSync(join(installed, 'node_modules', dev)), `${dev} was installed`);
    assert.ok(!existsSync(join(installed, 'control/cli/main.ts')), 'TypeScript sources were installed');
  });

  for (const name of ['bpfleet', 'bpfleet-agent', 'bpfleet-control']) {
    it(`${name} --help and version run from the installed package`, async () => {
      const help = await cmd(name, '--help');
      assert.match(help.stdout, new RegExp(`^Usage: ${name} `));
      const version = await cmd(name, 'version');
      assert.match(version.stdout, new RegExp(`^${name} \\d+\\.\\d+\\.\\d+( \\(commit [0-9a-f]{12}(-dirty)?\\))?\\n$`));
    });
  }

  it('bpfleet --help lists dev; bpfleet dev --help and dev status run from the installed package', async () => {
    assert.match((await cmd('bpfleet', '--help')).stdout, /^ {2}dev +a local fleet/m);
    const help = await cmd('bpfleet', 'dev', '--help');
    assert.match(help.stdout, /^Usage: bpfleet dev /);
    for (const verb of ['up', 'down', 'status', 'env']) assert.match(help.stdout, new RegExp(`^ {2}${verb} `, 'm'));
    // A name no one uses: status of a fleet that is not running is exit 1, and says so.
    const status = await cmd('bpfleet', 'dev', 'status', '--name', `pkg${process.pid}`).then(() => assert.fail('exit 0 for a fleet that is not running'), (e: { code: number; stdout: string }) => e);
    assert.equal(status.code, 1);
    assert.match(status.stdout, /^no dev fleet "pkg\d+" \(bpfleet dev up starts one\)\n$/);
  });

  // The whole dev fleet (etcd, NATS, control plane, one host with its agent) from the package:
  // its supervisor, control plane and agent run dist/ on plain Node. About 10 s.
  it('bpfleet dev up, env, down run from the installed package; the CLI from there reaches the fleet', async (t) => {
    if (!(await requirePrereqs(t, ['root', 'bpf', 'bpffs', 'etcd', 'nats', 'netns', 'nsenter']))) return;
    const name = `pkg${process.pid % 100_000}`;
    t.after(() => cmd('bpfleet', 'dev', 'down', '--name', name).catch(() => undefined));
    const up = await cmd('bpfleet', 'dev', 'up', '--name', name, '--hosts', '1', '--pps', '100');
    assert.match(up.stdout, new RegExp(`^dev fleet "${name}": ready$`, 'm'));
    assert.match(up.stdout, new RegExp(`running ${name}-h1-agent`));
    const env = (await cmd('bpfleet', 'dev', 'env', '--name', name)).stdout;
    const vars = Object.fromEntries([...env.matchAll(/^export (BPFLEET_\w+)='([^']*)'$/gm)].map((m) => [m[1]!, m[2]!]));
    assert.ok(vars.BPFLEET_SERVER && vars.BPFLEET_CA, env);
    const hosts = await run(join(prefix, 'bin', 'bpfleet'), ['hosts', '-o', 'json'], { cwd: dir, env: { ...env0, ...vars }, encoding: 'utf8' });
    assert.deepEqual((JSON.parse(hosts.stdout) as { hosts: { name: string }[] }).hosts.map((h) => h.name), ['h1']);
    assert.match((await cmd('bpfleet', 'dev', 'down', '--name', name)).stdout, new RegExp(`^dev fleet "${name}" is down`));
  });

  it('the daemons load their config from the installed package (zod, yaml resolved there)', async () => {
    const { stdout } = await cmd('bpfleet-agent', '--print-config', '--config', join(installed, 'infra/config/agent.yaml'), '--host', 'pkg-check');
    assert.match(stdout, /^host:\n {2}name: pkg-check\n/);
  });

  it('koffi from the installed package finds the system libbpf', async () => {
    const script = `const koffi = (await import(${JSON.stringify(join(installed, 'node_modules/koffi/index.js'))})).default; koffi.load('libbpf.so.1'); process.stdout.write('ok');`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: dir, env: env0, encoding: 'utf8' });
    assert.equal(stdout, 'ok');
  });
});
