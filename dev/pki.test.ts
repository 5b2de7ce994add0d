import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { readIdentity } from '../common/identity.js';
import { createFleetPki, DEV_TRUST_DOMAIN } from './pki.js';

describe('createFleetPki', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bpfleet-dev-pki-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('issues the control plane, every host and one user per role, each verifying against the bundle', async () => {
    const pki = await createFleetPki(join(dir, 'pki'), { hosts: ['h1', 'h2'], sans: ['198.18.0.1'], hostSans: new Map([['h2', ['198.18.2.2']]]) });
    assert.deepEqual([...pki.hosts.keys()], ['h1', 'h2']);
    const read = (path: string) => readIdentity(readFileSync(path, 'utf8'), DEV_TRUST_DOMAIN).identity;
    assert.deepEqual(read(pki.control.certPath)?.kind, 'control');
    assert.deepEqual(read(pki.hosts.get('h2')!.certPath)?.name, 'h2');
    assert.deepEqual(read(pki.users.operator.certPath)?.roles, ['operator']);
    const all = [pki.control, ...pki.hosts.values(), ...Object.values(pki.users)];
    assert.equal(all.length, 7);
    for (const c of all) execFileSync('openssl', ['verify', '-CAfile', pki.caPath, c.certPath], { stdio: 'pipe' });
    const h2 = execFileSync('openssl', ['x509', '-noout', '-ext', 'subjectAltName', '-in', pki.hosts.get('h2')!.certPath], { encoding: 'utf8' });
    assert.match(h2, /198\.18\.2\.2/);
    assert.match(h2, /198\.18\.0\.1/);
    const h1 = execFileSync('openssl', ['x509', '-noout', '-ext', 'subjectAltName', '-in', pki.hosts.get('h1')!.certPath], { encoding: 'utf8' });
    assert.doesNotMatch(h1, /198\.18\.2\.2/);
  });
});
