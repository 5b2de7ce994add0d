import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { createCa, signLeaf, validityWindow, LEAF_VALIDITY_MS, CA_VALIDITY_MS, type Ca } from '../control/pki/certificates.js';
import { authorize, parseSpiffeId, readIdentity, spiffeIdFor, type Identity, type Role } from './identity.js';
import { x509 } from './x509.js';

const TD = 'fleet.test';
const DAY = 86_400_000;

describe('parseSpiffeId', () => {
  const good: [string, Pick<Identity, 'kind' | 'name' | 'roles'>][] = [
    ['spiffe://fleet.test/bpfleet/host/h1', { kind: 'host', name: 'h1', roles: [] }],
    ['spiffe://fleet.test/bpfleet/control/control-1', { kind: 'control', name: 'control-1', roles: [] }],
    ['spiffe://fleet.test/bpfleet/user/alice/viewer', { kind: 'user', name: 'alice', roles: ['viewer'] }],
    ['spiffe://fleet.test/bpfleet/user/ci/viewer/operator/publisher', { kind: 'user', name: 'ci', roles: ['viewer', 'operator', 'publisher'] }],
    ['spiffe://fleet.test/bpfleet/user/root/admin', { kind: 'user', name: 'root', roles: ['admin'] }],
  ];
  for (const [uri, want] of good) {
    it(`reads ${uri}`, () => {
      const r = parseSpiffeId(uri, TD);
      assert.deepEqual(r.identity, { ...want, trustDomain: TD, spiffeId: uri });
    });
  }

  const bad: [string, RegExp][] = [
    ['https://fleet.test/bpfleet/host/h1', /not a SPIFFE ID/],
    ['SPIFFE://fleet.test/bpfleet/host/h1', /not a SPIFFE ID/],
    ['spiffe://other.test/bpfleet/host/h1', /trust domain "other.test" is not this fleet's \("fleet.test"\)/],
    ['spiffe://Fleet.test/bpfleet/host/h1', /trust domain "Fleet.test"/],
    ['spiffe://fleet.test:443/bpfleet/host/h1', /trust domain "fleet.test:443"/],
    ['spiffe://u@fleet.test/bpfleet/host/h1', /trust domain "u@fleet.test"/],
    ['spiffe://fleet.test', /path is not/],
    ['spiffe://fleet.test/', /path segments/],
    ['spiffe://fleet.test/bpfleet/host/h1/', /path segments/],
    ['spiffe://fleet.test/bpfleet//host/h1', /path segments/],
    ['spiffe://fleet.test/bpfleet/host/../h1', /path segments/],
    ['spiffe://fleet.test/bpfleet/host/h%31', /path segments/],
    ['spiffe://fleet.test/bpfleet/host/h1?x=1', /path segments/],
    ['spiffe://fleet.test/bpfleet/host/h1#x', /path segments/],
    ['spiffe://fleet.test/bpfleet/user/alice?roles=admin', /path segments/],
    ['spiffe://fleet.test/bpfleet/admin/alice', /path is not/],
    ['spiffe://fleet.test/other/host/h1', /path is not/],
    ['spiffe://fleet.test/Bpfleet/host/h1', /path is not/],
    ['spiffe://fleet.test/bpfleet/host', /name ""/],
    ['spiffe://fleet.test/bpfleet/host/H1', /name "H1"/],
    ['spiffe://fleet.test/bpfleet/host/-h1', /name "-h1"/],
    [`spiffe://fleet.test/bpfleet/host/${'a'.repeat(64)}`, /name "a{64}"/],
    ['spiffe://fleet.test/bpfleet/host/h1/admin', /a host identity has no roles/],
    ['spiffe://fleet.test/bpfleet/control/c1/admin', /a control identity has no roles/],
    ['spiffe://fleet.test/bpfleet/user/alice', /a user needs at least one role/],
    ['spiffe://fleet.test/bpfleet/user/alice/root', /role "root" is not one of/],
    ['spiffe://fleet.test/bpfleet/user/alice/Admin', /role "Admin" is not one of/],
    ['spiffe://fleet.test/bpfleet/user/alice/admin/viewer', /in the order viewer, operator, publisher, admin/],
    ['spiffe://fleet.test/bpfleet/user/alice/viewer/viewer', /once each/],
    [`spiffe://fleet.test/bpfleet/user/alice/${'viewer/'.repeat(300)}viewer`, /longer than 2048 bytes/],
  ];
  for (const [uri, reason] of bad) {
    it(`refuses ${uri.length > 80 ? `${uri.slice(0, 77)}...` : uri}`, () => {
      const r = parseSpiffeId(uri, TD);
      assert.equal(r.identity, null);
      assert.match(r.reason!, reason);
    });
  }

  it('accepts any trust domain only when asked to (for display)', () => {
    assert.equal(parseSpiffeId('spiffe://other.test/bpfleet/host/h1', null).identity?.trustDomain, 'other.test');
  });
});

describe('spiffeIdFor', () => {
  it('writes roles in canonical order, and reads back', () => {
    const id = spiffeIdFor(TD, 'user', 'ci', ['publisher', 'viewer']);
    assert.equal(id, 'spiffe://fleet.test/bpfleet/user/ci/viewer/publisher');
    assert.deepEqual(parseSpiffeId(id, TD).identity?.roles, ['viewer', 'publisher']);
  });
  it('throws what the parser would refuse', () => {
    assert.throws(() => spiffeIdFor(TD, 'host', 'H1'), /name "H1"/);
    assert.throws(() => spiffeIdFor(TD, 'user', 'a', ['viewer', 'viewer']), /once each/);
    assert.throws(() => spiffeIdFor(TD, 'user', 'a'), /at least one role/);
  });
});

describe('readIdentity from certificates', () => {
  let ca: Ca;
  let host: x509.X509Certificate;
  let user: x509.X509Certificate;
  const window = () => validityWindow(DAY, LEAF_VALIDITY_MS);

  /** A certificate signed by `ca` with exactly `extensions`, for shapes the PKI never makes. */
  const craft = async (extensions: x509.Extension[]) => {
    const keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']) as CryptoKeyPair;
    return await x509.X509CertificateGenerator.create({
      subject: 'CN=crafted', issuer: ca.cert.subjectName, ...window(), signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      publicKey: keys.publicKey, signingKey: ca.key, extensions,
    });
  };
  const leafUsage = () => new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true);
  const uri = (...values: string[]) => new x509.SubjectAlternativeNameExtension(values.map((value) => ({ type: 'url' as const, value })));
  const pem = (c: x509.X509Certificate) => c.toString('pem');

  before(async () => {
    ca = (await createCa(TD, validityWindow(2 * DAY, CA_VALIDITY_MS))).ca;
    host = (await signLeaf(ca, { kind: 'host', name: 'h1', sans: ['10.1.2.3'] }, window())).cert;
    user = (await signLeaf(ca, { kind: 'user', name: 'alice', roles: ['operator', 'viewer'] }, window())).cert;
  });

  it('reads the same identity from PEM, DER and a TLS peer certificate', () => {
    const want = { kind: 'host', name: 'h1', roles: [], trustDomain: TD, spiffeId: 'spiffe://fleet.test/bpfleet/host/h1' };
    const der = Buffer.from(host.rawData);
    assert.deepEqual(readIdentity(pem(host), TD).identity, want);
    assert.deepEqual(readIdentity(der, TD).identity, want);
    assert.deepEqual(readIdentity({ raw: der }, TD).identity, want);
  });

  it('reads a user with roles in canonical order', () => {
    assert.deepEqual(readIdentity(pem(user), TD).identity?.roles, ['viewer', 'operator']);
  });

  it("refuses another fleet's trust domain", () => {
    assert.match(readIdentity(pem(host), 'other.test').reason!, /is not this fleet's/);
  });

  it('refuses the CA certificate itself', () => {
    assert.match(readIdentity(pem(ca.cert), null).reason!, /a CA certificate identifies no one/);
  });

  it('refuses what is not a certificate', () => {
    assert.match(readIdentity('hello', TD).reason!, /not an X.509 certificate: no PEM CERTIFICATE block/);
    assert.match(readIdentity(Buffer.from('hello'), TD).reason!, /not an X.509 certificate/);
    assert.match(readIdentity({ raw: Buffer.alloc(0) }, TD).reason!, /not an X.509 certificate/);
  });

  const shapes: [string, () => x509.Extension[], RegExp][] = [
    ['two URI SANs', () => [leafUsage(), uri('spiffe://fleet.test/bpfleet/host/h1', 'spiffe://fleet.test/bpfleet/user/h1/admin')], /2 URI SANs/],
    ['no URI SAN', () => [leafUsage(), new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'h1' }])], /0 URI SANs/],
    ['no SAN extension', () => [leafUsage()], /no subject alternative name extension/],
    ['two SAN extensions', () => [leafUsage(), uri('spiffe://fleet.test/bpfleet/host/h1'), uri('spiffe://fleet.test/bpfleet/user/h1/admin')], /more than one subject alternative name extension/],
    ['no key usage', () => [uri('spiffe://fleet.test/bpfleet/host/h1')], /no key usage extension/],
    ['key usage without digitalSignature', () => [new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyAgreement, true), uri('spiffe://fleet.test/bpfleet/host/h1')], /lacks digitalSignature/],
    ['a leaf allowed to sign certificates', () => [new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign, true), uri('spiffe://fleet.test/bpfleet/host/h1')], /allows signing certificates/],
    ['a CA flag', () => [new x509.BasicConstraintsExtension(true, 0, true), leafUsage(), uri('spiffe://fleet.test/bpfleet/host/h1')], /a CA certificate identifies no one/],
    ['a SPIFFE ID outside bpfleet', () => [leafUsage(), uri('spiffe://fleet.test/ns/default/sa/web')], /path is not/],
  ];
  for (const [what, extensions, reason] of shapes) {
    it(`refuses a certificate with ${what}`, async () => {
      const r = readIdentity(pem(await craft(extensions())), TD);
      assert.equal(r.identity, null);
      assert.match(r.reason!, reason);
    });
  }

  it('reads a certificate an external CA made in the documented shape (no basic constraints, both EKUs)', async () => {
    const c = await craft([
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'ci.example' }, { type: 'url', value: 'spiffe://fleet.test/bpfleet/user/release-bot/operator/publisher' }]),
    ]);
    assert.deepEqual(readIdentity(pem(c), TD).identity?.roles, ['operator', 'publisher']);
  });
});

describe('authorize', () => {
  const user = (...roles: Role[]): Identity => ({ kind: 'user', name: 'u', roles, trustDomain: TD, spiffeId: '' });
  const cases: [string, Identity | null | undefined, Role, boolean][] = [
    ['no identity', null, 'viewer', false],
    ['undefined', undefined, 'viewer', false],
    ['a viewer viewing', user('viewer'), 'viewer', true],
    ['a viewer operating', user('viewer'), 'operator', false],
    ['an operator viewing (roles do not imply each other)', user('operator'), 'viewer', false],
    ['an operator publishing', user('operator'), 'publisher', false],
    ['viewer+publisher publishing', user('viewer', 'publisher'), 'publisher', true],
    ['an admin publishing', user('admin'), 'publisher', true],
    ['an admin as admin', user('admin'), 'admin', true],
    ['a publisher as admin', user('publisher'), 'admin', false],
    ['a user without roles', user(), 'viewer', false],
    ['a host', { kind: 'host', name: 'h1', roles: [], trustDomain: TD, spiffeId: '' }, 'viewer', false],
    ['the control plane', { kind: 'control', name: 'c', roles: [], trustDomain: TD, spiffeId: '' }, 'viewer', false],
    ['a host claiming a role', { kind: 'host', name: 'h1', roles: ['admin'], trustDomain: TD, spiffeId: '' }, 'viewer', false],
  ];
  for (const [what, identity, needed, want] of cases) {
    it(`${what}: ${want ? 'allowed' : 'denied'}`, () => assert.equal(authorize(identity, needed), want));
  }
});
