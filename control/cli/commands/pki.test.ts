/** `bpfleet pki ...` through the real CLI (bin/bpfleet.mjs in a child process). */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { readIdentity } from '../../../common/identity.js';
import { parseValidity } from './pki.js';

const BIN = resolve(dirname(fileURLToPath(import.meta.url)), '../../../bin/bpfleet.mjs');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function bpfleet(args: string[], opts: { cwd: string; env?: Record<string, string> }): Promise<Run> {
  const env = { ...process.env, ...opts.env };
  if (!opts.env?.BPFLEET_PKI_DIR) delete env.BPFLEET_PKI_DIR;
  return new Promise((done) => {
    execFile(process.execPath, [BIN, ...args], { cwd: opts.cwd, env }, (err, stdout, stderr) => {
      done({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('bpfleet pki (the real CLI)', () => {
  const cwd = mkdtempSync(join(tmpdir(), 'bpfleet-pki-cli-'));
  after(() => rmSync(cwd, { recursive: true, force: true }));

  it('init creates ./pki by default and prints where each file is', async () => {
    const r = await bpfleet(['pki', 'init', '--trust-domain', 'fleet.test'], { cwd });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /created the fleet CA "CN=bpfleet CA [0-9a-f]{16}, O=bpfleet" for trust domain fleet\.test/);
    assert.match(r.stdout, /trust bundle: pki\/ca\.crt/);
    assert.match(r.stdout, /CA key: +pki\/ca\.key \(mode 0600/);
    assert.equal(statSync(join(cwd, 'pki/ca.key')).mode & 0o777, 0o600);
  });

  it('init refuses to replace the CA (exit 2, files unchanged) unless --force', async () => {
    const before = readFileSync(join(cwd, 'pki/ca.crt'), 'utf8');
    const refused = await bpfleet(['pki', 'init', '--trust-domain', 'fleet.test'], { cwd });
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /pki\/ca\.crt already exists; refusing to replace the fleet CA .*--force/);
    assert.equal(readFileSync(join(cwd, 'pki/ca.crt'), 'utf8'), before);
    const forced = await bpfleet(['pki', 'init', '--trust-domain', 'fleet.test', '--force'], { cwd });
    assert.equal(forced.code, 0, forced.stderr);
    assert.notEqual(readFileSync(join(cwd, 'pki/ca.crt'), 'utf8'), before);
  });

  it('issue writes the certificate and key, and show prints identity, roles, SANs and validity', async () => {
    const host = await bpfleet(['pki', 'issue', 'host', 'h1', '--san', '10.0.0.5,h1.dc1.example'], { cwd });
    assert.equal(host.code, 0, host.stderr);
    assert.match(host.stdout, /issued host h1, valid until \d{4}-/);
    assert.match(host.stdout, /spiffe:\/\/fleet\.test\/bpfleet\/host\/h1\n +certificate: pki\/h1\.crt\n +key: +pki\/h1\.key \(mode 0600\)/);

    const user = await bpfleet(['pki', 'issue', 'user', 'alice', '--role', 'operator', '--role', 'viewer', '--validity', '30d'], { cwd });
    assert.equal(user.code, 0, user.stderr);
    assert.deepEqual(readIdentity(readFileSync(join(cwd, 'pki/alice.crt'), 'utf8'), 'fleet.test').identity?.roles, ['viewer', 'operator']);

    const shown = await bpfleet(['pki', 'show', 'pki/h1.crt'], { cwd });
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /^identity: +host h1$/m);
    assert.match(shown.stdout, /^roles: +-$/m);
    assert.match(shown.stdout, /^trust domain: fleet\.test$/m);
    assert.match(shown.stdout, /^SANs: +URI:spiffe:\/\/fleet\.test\/bpfleet\/host\/h1, DNS:localhost, DNS:h1\.dc1\.example, IP:127\.0\.0\.1, IP:::1, IP:10\.0\.0\.5$/m);
    assert.match(shown.stdout, /^validity: +\S+ to \S+$/m);
    assert.match(shown.stdout, /^usage: +serverAuth, clientAuth$/m);

    const json = await bpfleet(['pki', 'show', 'pki/alice.crt', '-o', 'json'], { cwd });
    const doc = JSON.parse(json.stdout) as { identity: { kind: string; roles: string[] }; notAfter: string; notBefore: string; extendedKeyUsages: string[] };
    assert.deepEqual([doc.identity.kind, doc.identity.roles, doc.extendedKeyUsages], ['user', ['viewer', 'operator'], ['clientAuth']]);
    assert.equal(Date.parse(doc.notAfter) - Date.parse(doc.notBefore), 30 * 86_400_000 + 5 * 60_000);

    const ca = await bpfleet(['pki', 'show', 'pki/ca.crt'], { cwd });
    assert.match(ca.stdout, /^identity: +none \(a CA certificate identifies no one/m);
  });

  it('refuses bad input with exit 2 and a message naming the field', async () => {
    const cases: [string[], RegExp][] = [
      [['pki', 'issue', 'user', 'bob'], /roles: a user certificate needs at least one of viewer, operator, publisher, admin/],
      [['pki', 'issue', 'host', 'Bad_Name'], /name "Bad_Name": lowercase letters/],
      [['pki', 'issue', 'host', 'h2', '--role', 'admin'], /roles: a host certificate carries no roles/],
      [['pki', 'issue', 'host', 'h2', '--validity', '3w'], /--validity "3w": a number of days or hours/],
      [['pki', 'issue', 'host', 'h1'], /pki\/h1\.crt already exists; use --force/],
      [['pki', 'show', 'pki/ca.key'], /not an X\.509 certificate/],
    ];
    for (const [args, message] of cases) {
      const r = await bpfleet(args, { cwd });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
  });

  it('takes the directory from BPFLEET_PKI_DIR, and rotates there', async () => {
    const env = { BPFLEET_PKI_DIR: join(cwd, 'other') };
    assert.equal((await bpfleet(['pki', 'init', '--trust-domain', 'other.test'], { cwd, env })).code, 0);
    assert.equal((await bpfleet(['pki', 'issue', 'control', 'control'], { cwd, env })).code, 0);
    const rotated = await bpfleet(['pki', 'rotate'], { cwd, env });
    assert.equal(rotated.code, 0, rotated.stderr);
    assert.match(rotated.stdout, /re-issued 1 certificate\(s\) with new keys:\n +spiffe:\/\/other\.test\/bpfleet\/control\/control/);
    assert.match(rotated.stdout, /then: bpfleet pki rotate --finish/);
    assert.equal(readFileSync(join(cwd, 'other/ca.crt'), 'utf8').match(/BEGIN CERTIFICATE/g)?.length, 2);
    const finished = await bpfleet(['pki', 'rotate', '--finish'], { cwd, env });
    assert.match(finished.stdout, /other\/ca\.crt now trusts only the current CA; no longer trusted: "CN=bpfleet CA/);
    assert.equal(readFileSync(join(cwd, 'other/ca.crt'), 'utf8').match(/BEGIN CERTIFICATE/g)?.length, 1);
  });

  it('help shows examples', async () => {
    const r = await bpfleet(['pki', '--help'], { cwd });
    assert.match(r.stdout, /Examples:\n  bpfleet pki init --trust-domain/);
    assert.match(r.stdout, /bpfleet pki rotate --finish/);
  });
});

describe('parseValidity', () => {
  it('reads days and hours in milliseconds', () => {
    assert.equal(parseValidity('365d'), 365 * 86_400_000);
    assert.equal(parseValidity('12h'), 12 * 3_600_000);
  });
  it('refuses anything else, naming --validity', () => {
    for (const bad of ['', '1y', '1.5d', '-1d', 'd', '10']) assert.throws(() => parseValidity(bad), /--validity/);
  });
});
