/**
 * Signed modules end to end: keys and signatures made with the real CLI, pushed through the
 * control plane, and an agent started with --require-signatures --trusted-keys that refuses
 * what is unsigned, signed by a key it does not trust, or signed for something else (a
 * signature replayed onto another version), each with its own reason, before anything is
 * loaded: the kernel (bpftool) shows the same program throughout. Real etcd, NATS, kernel.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fromServiceError } from '../common/errors.js';
import { parseManifestFile } from '../common/manifest.js';
import { Control } from '../control/cli/client.js';
import { LocalFleet, REPO } from '../dev/fleet.js';
import { CommandError, run } from '../dev/processes.js';
import * as kernel from './support/bpftool.js';
import { prereqSkip } from './support/prereqs.js';

const skip = await prereqSkip(['root', 'bpf', 'bpffs', 'etcd', 'nats', 'netns', 'nsenter', 'clang']);

const PROG = 'pass_counter';

interface RolloutJson {
  id: string;
  status: { phase: string; message: string };
}

/** The CLI without a fleet, for what needs no server. */
async function bpfleet(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    return { code: 0, ...(await run(process.execPath, [join(REPO, 'bin/bpfleet.mjs'), ...args])) };
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    return { code: Number(err.code), stdout: err.stdout, stderr: err.stderr };
  }
}

describe('signed modules: an agent that requires signatures refuses the rest before loading anything', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'bpfleet-e2e-sig-'));
  const trusted = join(dir, 'trusted');
  let fleet: LocalFleet;
  let running = 0;
  let link = 0;

  /** A module version in `dir`, with its own copy of the object, so `<object>.sig` is its own. */
  const moduleFile = (version: string, source: 'v1' | 'v2') => {
    const object = `${version}.bpf.o`;
    copyFileSync(join(REPO, `agent/bpf/build/pass-counter-${source}.bpf.o`), join(dir, object));
    const text = readFileSync(join(REPO, `agent/bpf/pass-counter-${source}.yaml`), 'utf8')
      .replace(/^version: .*$/m, `version: ${version}`).replace(/^object: .*$/m, `object: ${object}`);
    const path = join(dir, `${version}.yaml`);
    writeFileSync(path, text);
    return path;
  };
  const sign = async (manifest: string, key: string) => {
    const r = await bpfleet(['module', 'sign', manifest, '--key', join(dir, `${key}.private.pem`)]);
    assert.equal(r.code, 0, r.stderr);
  };
  const push = async (manifest: string) => {
    const r = await fleet.cli(['module', 'push', manifest, '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { module: { keyId?: string; digest: string } }).module;
  };
  const rollout = async (version: string) => {
    const spec = `module: pass-counter\nversion: ${version}\nattachment: xdp:eth0\nsteps: [{percent: 100}]\nonFailure: rollback\n`;
    const r = await fleet.cli(['rollout', 'create', '-f', '-', '--wait', '--timeout', '60s'], { stdin: spec });
    const list = await fleet.cli(['rollout', 'list', '-o', 'json']);
    const last = (JSON.parse(list.stdout) as { rollouts: RolloutJson[] }).rollouts.at(-1)!;
    return { code: r.code, output: r.stdout + r.stderr, rollout: last };
  };
  const attached = () => kernel.hostXdpProgId(fleet, 'h1');

  before(async () => {
    for (const key of ['release', 'rogue']) {
      const r = await bpfleet(['keys', 'create', '--out', join(dir, key)]);
      assert.equal(r.code, 0, r.stderr);
    }
    mkdirSync(trusted);
    copyFileSync(join(dir, 'release.public.pem'), join(trusted, 'release.public.pem'));
    fleet = await LocalFleet.start({
      name: 'sig', hosts: 1, trafficPps: 500,
      agentArgs: () => ['--require-signatures', '--trusted-keys', trusted],
    });
  });

  after(async () => {
    await fleet?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('keys create refuses to overwrite a key', async () => {
    const before = readFileSync(join(dir, 'release.private.pem'), 'utf8');
    const r = await bpfleet(['keys', 'create', '--out', join(dir, 'release')]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /release\.private\.pem already exists; refusing to overwrite/);
    assert.equal(readFileSync(join(dir, 'release.private.pem'), 'utf8'), before);
  });

  test('a module signed by a trusted key is installed, then upgraded by an atomic swap', async () => {
    const v1 = moduleFile('1.0.0', 'v1');
    await sign(v1, 'release');
    const pushed = await push(v1);
    assert.match(pushed.keyId ?? '', /^ed25519:[0-9a-f]{16}$/);
    const r = await rollout('1.0.0');
    assert.equal(r.code, 0, r.output);
    running = await attached();
    link = (await kernel.linkOfProg(running))!.id;

    const v2 = moduleFile('2.0.0', 'v2');
    await sign(v2, 'release');
    await push(v2);
    const up = await rollout('2.0.0');
    assert.equal(up.code, 0, up.output);
    const now = await attached();
    assert.notEqual(now, running, 'the signed 2.0.0 must be running');
    assert.equal((await kernel.linkOfProg(now))?.id, link, 'swapped on the same link');
    running = now;
  });

  test('unsigned, untrusted and replayed signatures are refused with distinct reasons; nothing is loaded', async () => {
    const unsigned = moduleFile('2.1.0-unsigned', 'v1');
    const untrusted = moduleFile('2.1.0-untrusted', 'v1');
    await sign(untrusted, 'rogue');
    await push(unsigned);
    await push(untrusted);

    // 2.1.0's valid signature sent with another version of the same object, straight to
    // the API: the control plane cannot tell (it holds no keys), the agent must.
    const signedOnce = moduleFile('2.1.0', 'v1');
    await sign(signedOnce, 'release');
    const sig = JSON.parse(readFileSync(join(dir, '2.1.0.bpf.o.sig'), 'utf8')) as { signature: string; keyId: string };
    const replayed = parseManifestFile(readFileSync(signedOnce, 'utf8').replace(/^version: .*$/m, 'version: 2.1.0-replayed'), 'replayed');
    const ctl = new Control(fleet.controlAddress, fleet.transport());
    try {
      await ctl.call('pushModule', {
        manifest: replayed.manifest, object: readFileSync(join(dir, '2.1.0.bpf.o')), digest: '',
        signature: Buffer.from(sig.signature, 'base64'), keyId: sig.keyId,
      });
    } catch (err) {
      assert.fail(`the control plane refused the replayed push: ${fromServiceError(err).message}`);
    } finally {
      ctl.close();
    }

    const watermark = Math.max(0, ...(await kernel.progs()).map((p) => p.id));
    const cases = [
      { version: '2.1.0-unsigned', reason: 'UNSIGNED', message: /is not signed and this host requires signed modules/ },
      { version: '2.1.0-untrusted', reason: 'UNTRUSTED_KEY', message: /signed by ed25519:[0-9a-f]{16}, which this host does not trust/ },
      { version: '2.1.0-replayed', reason: 'BAD_SIGNATURE', message: /signature by ed25519:[0-9a-f]{16} does not match this module/ },
    ];
    for (const c of cases) {
      const r = await rollout(c.version);
      assert.equal(r.code, 3, `${c.version}: must be rolled back\n${r.output}`);
      assert.equal(r.rollout.status.phase, 'ROLLOUT_PHASE_ROLLED_BACK');
      assert.match(r.rollout.status.message, new RegExp(`^apply failed on h1 \\(${c.reason}: `), c.version);
      assert.match(r.rollout.status.message, c.message);
      assert.match(r.output, new RegExp(`${c.reason}: `), `${c.version}: rollout create --wait must say why`);
      assert.equal(await attached(), running, `${c.version}: the running program changed`);
      assert.equal((await kernel.linkOfProg(running))?.id, link);
    }
    const loaded = (await kernel.progs()).filter((p) => p.name === PROG && p.id > watermark);
    assert.deepEqual(loaded, [], 'a refused module must never reach the kernel');
  });

  test('a push with a stale or malformed signature is refused and registers nothing', async () => {
    const versions = async () => ((JSON.parse((await fleet.cli(['module', 'list', '-o', 'json'])).stdout) as { modules?: { manifest: { version: string } }[] })
      .modules ?? []).map((m) => m.manifest.version);
    const before = await versions();
    const stale = moduleFile('3.0.0-stale', 'v1');
    await sign(stale, 'release');
    copyFileSync(join(REPO, 'agent/bpf/build/pass-counter-v2.bpf.o'), join(dir, '3.0.0-stale.bpf.o'));
    const r = await fleet.cli(['module', 'push', stale]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /3\.0\.0-stale\.bpf\.o\.sig does not sign this module \(digest: signed sha256:[0-9a-f]+, now sha256:[0-9a-f]+\); run bpfleet module sign again/);

    const ctl = new Control(fleet.controlAddress, fleet.transport());
    try {
      const { manifest } = parseManifestFile(readFileSync(stale, 'utf8').replace(/^version: .*$/m, 'version: 3.0.0-short'), 'short');
      const err = await ctl.call('pushModule', {
        manifest, object: readFileSync(join(dir, '3.0.0-stale.bpf.o')), digest: '', signature: Buffer.alloc(10), keyId: 'ed25519:0000000000000000',
      }).then(() => null, (e: unknown) => fromServiceError(e));
      assert.equal(err?.reason, 'BAD_SIGNATURE', String(err));
      assert.match(err!.message, /signature is 10 bytes, an ed25519 signature is 64/);
    } finally {
      ctl.close();
    }
    assert.deepEqual(await versions(), before);
  });

  test('an agent with an unusable signature policy refuses to start, with the reason', async () => {
    const base = ['--import', 'tsx', join(REPO, 'agent/main.ts'), '--driver', 'sim', '--host', 'policy-check', '--etcd', fleet.etcd.endpoint, '--nats', fleet.nats.url, '--insecure'];
    const noKeys = await run(process.execPath, [...base, '--require-signatures']).then(() => null, (e: CommandError) => e);
    assert.ok(noKeys, 'an agent requiring signatures with no trusted keys must not start');
    assert.match(noKeys.stderr, /--require-signatures needs --trusted-keys <dir>/);
    const privateDir = join(dir, 'private-in-trust');
    mkdirSync(privateDir);
    copyFileSync(join(dir, 'release.private.pem'), join(privateDir, 'release.private.pem'));
    const privateKey = await run(process.execPath, [...base, '--require-signatures', '--trusted-keys', privateDir]).then(() => null, (e: CommandError) => e);
    assert.ok(privateKey, 'an agent must not start trusting a private key file');
    assert.match(privateKey.stderr, /is a private key; trust public keys only/);
  });
});
