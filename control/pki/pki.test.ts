/**
 * The PKI directory, with OpenSSL as an independent witness: every certificate it makes
 * verifies with `openssl verify -x509_strict` for exactly the TLS purposes it is meant for,
 * and a rotation keeps old and new certificates verifying until it is finished.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { readIdentity } from '../../common/identity.js';
import { certPem, signLeaf } from './certificates.js';
import { finishRotation, initCa, issue, loadCa, rotate } from './pki.js';

const run = promisify(execFile);
const DAY = 86_400_000;

/** `openssl verify`: "OK", or the error OpenSSL reports. */
async function verify(caFile: string, cert: string, purpose: 'sslserver' | 'sslclient' | 'any'): Promise<string> {
  try {
    const { stdout } = await run('openssl', ['verify', '-x509_strict', ...(purpose === 'any' ? [] : ['-purpose', purpose]), '-CAfile', caFile, cert]);
    return stdout.trim().endsWith(': OK') ? 'OK' : stdout;
  } catch (err) {
    const out = `${(err as { stdout: string }).stdout}${(err as { stderr: string }).stderr}`;
    return /error \d+ at \d+ depth lookup: (.*)/.exec(out)?.[1] ?? out;
  }
}

async function opensslText(cert: string, ...args: string[]): Promise<string> {
  return (await run('openssl', ['x509', '-in', cert, '-noout', ...args])).stdout;
}

describe('fleet PKI directory', () => {
  const root = mkdtempSync(join(tmpdir(), 'bpfleet-pki-'));
  const dir = join(root, 'pki');
  const file = (name: string) => join(dir, name);
  const mode = (path: string) => statSync(path).mode & 0o777;
  after(() => rmSync(root, { recursive: true, force: true }));

  before(async () => {
    await initCa(dir, { trustDomain: 'fleet.test' });
  });

  it('creates the CA: directory 0700, key 0600, a CA certificate OpenSSL accepts', async () => {
    assert.equal(mode(dir), 0o700);
    assert.equal(mode(file('ca.key')), 0o600);
    assert.equal(mode(file('ca.crt')), 0o644);
    assert.equal(await verify(file('ca.crt'), file('ca.crt'), 'any'), 'OK');
    assert.equal(await verify(file('ca.crt'), file('ca.crt'), 'sslclient'), 'unsuitable certificate purpose', 'the CA is no TLS peer');
    const text = await opensslText(file('ca.crt'), '-text');
    assert.match(text, /Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    assert.match(text, /Key Usage: critical\s+Certificate Sign, CRL Sign/);
    assert.match(text, /URI:spiffe:\/\/fleet\.test\s/);
    assert.match(text, /ASN1 OID: prime256v1/);
  });

  it('refuses to replace the CA without force, and leaves it as it was', async () => {
    const before = readFileSync(file('ca.crt'), 'utf8');
    await assert.rejects(initCa(dir, { trustDomain: 'fleet.test' }), /ca\.crt already exists; refusing to replace the fleet CA .*--force/);
    assert.equal(readFileSync(file('ca.crt'), 'utf8'), before);
  });

  it('names the field it refuses', async () => {
    await assert.rejects(initCa(join(root, 'x'), { trustDomain: 'Fleet.Test' }), /trustDomain "Fleet.Test"/);
    await assert.rejects(initCa(join(root, 'x'), { trustDomain: 'fleet.test', validityMs: 1000 }), /validity: 1000 ms is outside/);
    const cases: [Parameters<typeof issue>[1], RegExp][] = [
      [{ kind: 'host', name: 'H1' }, /name "H1": lowercase/],
      [{ kind: 'host', name: 'a'.repeat(64) }, /name "a{64}"/],
      [{ kind: 'host', name: 'ca' }, /name "ca" is reserved/],
      [{ kind: 'robot' as 'host', name: 'r' }, /kind "robot": one of control, host, user/],
      [{ kind: 'host', name: 'h9', roles: ['admin'] }, /roles: a host certificate carries no roles/],
      [{ kind: 'user', name: 'u9' }, /roles: a user certificate needs at least one/],
      [{ kind: 'user', name: 'u9', roles: ['root' as 'admin'] }, /roles: "root" is not one of/],
      [{ kind: 'user', name: 'u9', roles: ['viewer', 'viewer'] }, /roles: viewer, viewer names a role twice/],
      [{ kind: 'user', name: 'u9', roles: ['viewer'], sans: ['10.0.0.1'] }, /sans: a user certificate is a TLS client only/],
      [{ kind: 'host', name: 'h9', sans: Array.from({ length: 33 }, (_, i) => `10.0.0.${i}`) }, /sans: 33 addresses; at most 32/],
      [{ kind: 'host', name: 'h9', sans: ['*.example.com'] }, /sans: "\*\.example\.com" is neither an IP address nor a DNS name/],
      [{ kind: 'host', name: 'h9', sans: ['a_b'] }, /sans: "a_b"/],
      [{ kind: 'host', name: 'h9', validityMs: 60_000 }, /validity: 60000 ms is outside/],
      [{ kind: 'host', name: 'h9', validityMs: 6 * 365 * DAY }, /validity: the certificate would outlive its CA/],
    ];
    for (const [req, message] of cases) await assert.rejects(issue(dir, req), message);
    await assert.rejects(issue(join(root, 'nothing'), { kind: 'host', name: 'h1' }), /ca\.crt does not exist: create the fleet CA first \(bpfleet pki init/);
  });

  it('issues a host certificate: TLS server and client, loopback and given addresses, key 0600', async () => {
    const h = await issue(dir, { kind: 'host', name: 'h1', sans: ['10.0.0.7', 'H1.Example.com', 'fd00::7'] });
    assert.equal(h.spiffeId, 'spiffe://fleet.test/bpfleet/host/h1');
    assert.equal(mode(h.keyPath), 0o600);
    assert.equal(await verify(file('ca.crt'), h.certPath, 'sslserver'), 'OK');
    assert.equal(await verify(file('ca.crt'), h.certPath, 'sslclient'), 'OK');
    const text = await opensslText(h.certPath, '-text');
    assert.match(text, /URI:spiffe:\/\/fleet\.test\/bpfleet\/host\/h1, DNS:localhost, DNS:h1\.example\.com, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1, IP Address:10\.0\.0\.7, IP Address:FD00:0:0:0:0:0:0:7/);
    assert.match(text, /Basic Constraints: critical\s+CA:FALSE/);
    assert.match(text, /Key Usage: critical\s+Digital Signature\n/);
    assert.match(text, /TLS Web Server Authentication, TLS Web Client Authentication/);
    assert.match(text, /Subject: CN = h1, O = bpfleet/);
    // The key file holds the certificate's key.
    const certKey = await opensslText(h.certPath, '-pubkey');
    const { stdout: keyPub } = await run('openssl', ['pkey', '-in', h.keyPath, '-pubout']);
    assert.equal(keyPub, certKey);
  });

  it('issues a user certificate that is a TLS client and never a server', async () => {
    const u = await issue(dir, { kind: 'user', name: 'alice', roles: ['operator', 'viewer'] });
    assert.equal(u.spiffeId, 'spiffe://fleet.test/bpfleet/user/alice/viewer/operator');
    assert.equal(await verify(file('ca.crt'), u.certPath, 'sslclient'), 'OK');
    assert.equal(await verify(file('ca.crt'), u.certPath, 'sslserver'), 'unsuitable certificate purpose');
    assert.match(await opensslText(u.certPath, '-ext', 'subjectAltName'), /^\s+URI:spiffe:\/\/fleet\.test\/bpfleet\/user\/alice\/viewer\/operator$/m);
  });

  it('refuses to replace a certificate without force, and renews it with force', async () => {
    await issue(dir, { kind: 'control', name: 'control' });
    const before = readFileSync(file('control.key'), 'utf8');
    await assert.rejects(issue(dir, { kind: 'control', name: 'control' }), /control\.crt already exists; use --force to replace it/);
    assert.equal(readFileSync(file('control.key'), 'utf8'), before);
    await issue(dir, { kind: 'control', name: 'control', force: true });
    assert.notEqual(readFileSync(file('control.key'), 'utf8'), before);
    assert.equal(await verify(file('ca.crt'), file('control.crt'), 'sslserver'), 'OK');
  });

  it('an expired certificate from this CA does not verify', async () => {
    const { ca } = await loadCa(dir);
    const old = await signLeaf(ca, { kind: 'host', name: 'h2' }, { notBefore: new Date(Date.now() - 2 * DAY), notAfter: new Date(Date.now() - DAY) });
    writeFileSync(join(root, 'expired.crt'), old.certPem);
    assert.equal(await verify(file('ca.crt'), join(root, 'expired.crt'), 'sslclient'), 'certificate has expired');
  });

  it('refuses a CA key that does not belong to ca.crt', async () => {
    const other = join(root, 'other');
    await initCa(other, { trustDomain: 'fleet.test' });
    const mixed = join(root, 'mixed');
    await initCa(mixed, { trustDomain: 'fleet.test' });
    copyFileSync(join(other, 'ca.key'), join(mixed, 'ca.key'));
    await assert.rejects(issue(mixed, { kind: 'host', name: 'h1' }), /ca\.key is not the key of the first certificate in .*ca\.crt/);
  });

  describe('rotation', () => {
    const saved = join(root, 'before-rotation');
    let previousCa: string;

    before(async () => {
      rmSync(saved, { recursive: true, force: true });
      await run('cp', ['-a', dir, saved]);
      previousCa = readFileSync(file('ca.crt'), 'utf8');
    });

    it('makes a new CA, trusts both, and re-issues every certificate with the same identity and addresses', async () => {
      const r = await rotate(dir);
      assert.deepEqual(r.reissued.map((l) => l.spiffeId).sort(), [
        'spiffe://fleet.test/bpfleet/control/control',
        'spiffe://fleet.test/bpfleet/host/h1',
        'spiffe://fleet.test/bpfleet/user/alice/viewer/operator',
      ]);
      const bundle = readFileSync(file('ca.crt'), 'utf8');
      assert.equal(bundle.match(/BEGIN CERTIFICATE/g)?.length, 2);
      assert.ok(bundle.endsWith(previousCa), 'the previous CA stays in the bundle, after the new one');
      assert.equal(mode(file('ca.key')), 0o600);
      assert.equal(mode(file('h1.key')), 0o600);
      assert.notEqual(readFileSync(file('h1.key'), 'utf8'), readFileSync(join(saved, 'h1.key'), 'utf8'), 'new keys');
      assert.equal(
        await opensslText(file('h1.crt'), '-ext', 'subjectAltName,extendedKeyUsage'),
        await opensslText(join(saved, 'h1.crt'), '-ext', 'subjectAltName,extendedKeyUsage'),
      );
      assert.deepEqual(readIdentity(readFileSync(file('alice.crt'), 'utf8'), 'fleet.test').identity?.roles, ['viewer', 'operator']);
    });

    it('old and new certificates both verify against the bundle; the new CA alone accepts only the new ones', async () => {
      for (const name of ['h1', 'control']) {
        assert.equal(await verify(file('ca.crt'), join(saved, `${name}.crt`), 'sslserver'), 'OK', `old ${name}`);
        assert.equal(await verify(file('ca.crt'), file(`${name}.crt`), 'sslserver'), 'OK', `new ${name}`);
      }
      assert.equal(await verify(file('ca.crt'), join(saved, 'alice.crt'), 'sslclient'), 'OK');
      assert.equal(await verify(file('ca.crt'), file('alice.crt'), 'sslclient'), 'OK');
      const newOnly = join(root, 'new-ca.crt');
      writeFileSync(newOnly, certPem((await loadCa(dir)).ca.cert));
      assert.equal(await verify(newOnly, file('h1.crt'), 'sslserver'), 'OK');
      assert.equal(await verify(newOnly, join(saved, 'h1.crt'), 'sslserver'), 'unable to get local issuer certificate');
    });

    it('refuses to rotate again before the rotation is finished', async () => {
      await assert.rejects(rotate(dir), /still trusts the previous CA .*bpfleet pki rotate --finish/);
    });

    it('finishing drops the previous CA: old certificates stop verifying, new ones do not', async () => {
      const { dropped } = await finishRotation(dir);
      assert.equal(dropped.length, 1);
      assert.equal(readFileSync(file('ca.crt'), 'utf8').match(/BEGIN CERTIFICATE/g)?.length, 1);
      assert.equal(await verify(file('ca.crt'), join(saved, 'h1.crt'), 'sslserver'), 'unable to get local issuer certificate');
      assert.equal(await verify(file('ca.crt'), file('h1.crt'), 'sslserver'), 'OK');
      assert.deepEqual(await finishRotation(dir), { dropped: [] });
    });

    it('refuses to rotate a directory holding a certificate it cannot re-issue', async () => {
      copyFileSync(join(root, 'expired.crt'), file('stray.crt'));
      await assert.rejects(rotate(dir), /stray\.crt: identity spiffe:\/\/fleet\.test\/bpfleet\/host\/h2 is not named after the file; .*move it out of/);
      rmSync(file('stray.crt'));
    });
  });
});
