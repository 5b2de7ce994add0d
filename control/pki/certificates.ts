/**
 * The fleet's certificates, made in memory with @peculiar/x509 on Node's WebCrypto: a CA,
 * and leaf certificates whose identity is the SPIFFE ID of common/identity.ts.
 *
 * Every key is ECDSA P-256 and every signature ECDSA with SHA-256: what TLS 1.2/1.3,
 * OpenSSL, etcd and nats-server all accept, with small keys and fast handshakes.
 *
 * Fields (RFC 5280 §4.1, §4.2.1; X509-SVID §3, §4):
 * - CA: basic constraints critical cA=true pathLen=0 (it signs leaves only); key usage
 *   critical keyCertSign+cRLSign; subject key identifier; URI SAN spiffe://<trust-domain>,
 *   where bpfleet keeps the trust domain (X509-SVID §3.2: a signing certificate's SPIFFE ID
 *   has no path).
 * - Leaf: basic constraints critical cA=false; key usage critical digitalSignature (all an
 *   ECDSA key does in TLS); authority and subject key identifiers; SANs: the SPIFFE ID, and
 *   for control and host certificates the addresses they serve on. Control and host
 *   certificates are both TLS servers and clients (extended key usage serverAuth +
 *   clientAuth); a user certificate is clientAuth only, so it can never pass for a server.
 *   (X509-SVID §4.4 asks for both purposes when the extension is present; bpfleet prefers
 *   the narrower one for people and robots, and parses either.)
 * - Subject: CN=<name>, O=bpfleet, for people and for tools that map a subject to a user
 *   (etcd takes the CN); bpfleet itself reads only the SPIFFE ID.
 * - Validity starts SKEW_MS before issue, so a host whose clock lags a little accepts a
 *   certificate made a moment ago; serial numbers are 16 random octets (RFC 5280 §4.1.2.2:
 *   positive, at most 20 octets, unique per CA).
 */
import { createHash, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { BpfleetError } from '../../common/errors.js';
import { IDENTITY_KINDS, ROLES, isTrustDomain, readIdentity, spiffeIdFor, toCertificate, type CertificateInput, type Identity, type IdentityKind, type Role } from '../../common/identity.js';
import { HOST_NAME_RE } from '../../common/keys.js';
import { x509 } from '../../common/x509.js';

const HOUR_MS = 3600_000;
const DAY_MS = 24 * HOUR_MS;

/** How far back validity starts, for clock skew between the issuer and the peers. */
export const SKEW_MS = 5 * 60_000;
export const DEFAULT_CA_VALIDITY_MS = 1826 * DAY_MS;
export const DEFAULT_LEAF_VALIDITY_MS = 365 * DAY_MS;
/** Validity bounds (ms); a leaf must also expire before its CA. */
export const CA_VALIDITY_MS = { min: DAY_MS, max: 20 * 366 * DAY_MS };
export const LEAF_VALIDITY_MS = { min: HOUR_MS, max: 20 * 366 * DAY_MS };
/** Addresses a request may add to the defaults (a handful per server is normal). */
const MAX_SANS = 32;
/** Every control and host certificate serves on loopback too: agents and the API bind there by default. */
export const DEFAULT_SERVER_SANS = ['127.0.0.1', '::1', 'localhost'];
/** Names that would collide with the CA's files in a PKI directory. */
const RESERVED_NAMES = ['ca'];

const KEY_ALGORITHM: EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGNING_ALGORITHM: EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };
const DNS_LABEL_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** A CA able to sign: its certificate and its private key. */
export interface Ca {
  cert: x509.X509Certificate;
  key: CryptoKey;
  trustDomain: string;
}

/** A certificate and its private key, each as PEM (the key PKCS#8, "PRIVATE KEY"). */
export interface Issued {
  cert: x509.X509Certificate;
  certPem: string;
  keyPem: string;
}

/** What a leaf certificate is for; see checkLeafRequest for the rules. */
export interface LeafRequest {
  kind: IdentityKind;
  name: string;
  /** Users only: at least one. */
  roles?: Role[];
  /** Control and host only: extra DNS names and IP addresses it serves on. */
  sans?: string[];
}

/** A leaf request, checked: its SPIFFE ID and the addresses it serves on (defaults included). */
interface CheckedLeaf {
  spiffeId: string;
  dns: string[];
  ips: string[];
}

export interface ValidityWindow {
  notBefore: Date;
  notAfter: Date;
}

const invalid = (message: string) => new BpfleetError('INVALID_ARGUMENT', 'INVALID_CERTIFICATE_REQUEST', message);

/**
 * Checks a leaf request; throws INVALID_ARGUMENT naming the field (kind, name, roles, sans).
 * Names are host names as bpfleet spells them; "ca" is reserved.
 */
function checkLeafRequest(req: LeafRequest, trustDomain: string): CheckedLeaf {
  if (!IDENTITY_KINDS.includes(req.kind)) throw invalid(`kind "${req.kind}": one of ${IDENTITY_KINDS.join(', ')}`);
  if (!HOST_NAME_RE.test(req.name)) throw invalid(`name "${req.name}": lowercase letters, digits and inner dashes, 1-63 characters`);
  if (RESERVED_NAMES.includes(req.name)) throw invalid(`name "${req.name}" is reserved for the CA's files`);
  // etcd takes a client certificate's CN as its user, and this name is the CN.
  if (req.name === 'root') throw invalid('name "root" is etcd\'s superuser: a certificate so named would be root in etcd');
  const roles = req.roles ?? [];
  const sans = req.sans ?? [];
  if (req.kind === 'user') {
    if (!roles.length) throw invalid(`roles: a user certificate needs at least one of ${ROLES.join(', ')}`);
    const unknown = roles.find((r) => !ROLES.includes(r));
    if (unknown !== undefined) throw invalid(`roles: "${unknown}" is not one of ${ROLES.join(', ')}`);
    if (new Set(roles).size !== roles.length) throw invalid(`roles: ${roles.join(', ')} names a role twice`);
    if (sans.length) throw invalid('sans: a user certificate is a TLS client only and carries no addresses');
  } else if (roles.length) {
    throw invalid(`roles: a ${req.kind} certificate carries no roles (its kind is what it may do)`);
  }
  if (sans.length > MAX_SANS) throw invalid(`sans: ${sans.length} addresses; at most ${MAX_SANS}`);
  const dns = new Set<string>();
  const ips = new Set<string>();
  for (const san of req.kind === 'user' ? [] : [...DEFAULT_SERVER_SANS, ...sans]) {
    if (isIP(san)) ips.add(san);
    else if (isDnsName(san)) dns.add(san.toLowerCase());
    else throw invalid(`sans: "${san}" is neither an IP address nor a DNS name (no wildcards)`);
  }
  return { spiffeId: spiffeIdFor(trustDomain, req.kind, req.name, roles), dns: [...dns], ips: [...ips] };
}

/** RFC 1123 host name: dot-separated labels of letters, digits and inner dashes, at most 253 characters. */
function isDnsName(s: string): boolean {
  return s.length <= 253 && s.toLowerCase().split('.').every((l) => DNS_LABEL_RE.test(l));
}

/**
 * The validity of a certificate made at `now` for `validityMs` milliseconds (an integer
 * within `bounds`); throws INVALID_ARGUMENT naming `validity` otherwise.
 */
export function validityWindow(validityMs: number, bounds: { min: number; max: number }, now: Date = new Date()): ValidityWindow {
  if (!Number.isSafeInteger(validityMs) || validityMs < bounds.min || validityMs > bounds.max) {
    throw invalid(`validity: ${validityMs} ms is outside ${bounds.min / HOUR_MS}h..${bounds.max / DAY_MS}d`);
  }
  return { notBefore: new Date(now.getTime() - SKEW_MS), notAfter: new Date(now.getTime() + validityMs) };
}

/** A new self-signed CA for `trustDomain` (SPIFFE-ID §2.1 syntax); throws INVALID_ARGUMENT naming the field. */
export async function createCa(trustDomain: string, window: ValidityWindow): Promise<{ ca: Ca; certPem: string; keyPem: string }> {
  if (!isTrustDomain(trustDomain)) throw invalid(`trustDomain "${trustDomain}": 1-255 of lowercase letters, digits, ".", "-", "_" (SPIFFE-ID §2.1)`);
  const keys = await generateKeys();
  const serialNumber = randomSerial();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber,
    // A CA name of its own per generation: during a rotation the bundle holds two CAs, and
    // chain building looks issuers up by name.
    name: [{ CN: [`bpfleet CA ${serialNumber.slice(0, 16)}`] }, { O: ['bpfleet'] }],
    ...window,
    signingAlgorithm: SIGNING_ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${trustDomain}` }]),
    ],
  });
  return { ca: { cert, key: keys.privateKey, trustDomain }, certPem: certPem(cert), keyPem: await keyPem(keys.privateKey) };
}

/**
 * A leaf certificate signed by `ca`, with a new key. Throws INVALID_ARGUMENT naming the
 * field for a bad request, or `validity` if it would outlive the CA.
 */
export async function signLeaf(ca: Ca, req: LeafRequest, window: ValidityWindow): Promise<Issued> {
  const checked = checkLeafRequest(req, ca.trustDomain);
  if (window.notAfter > ca.cert.notAfter) {
    throw invalid(`validity: the certificate would outlive its CA (expires ${ca.cert.notAfter.toISOString()}); choose a shorter one or rotate the CA`);
  }
  const caKeyId = ca.cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  if (!caKeyId) throw invalid('CA certificate has no subject key identifier');
  const keys = await generateKeys();
  const server = req.kind !== 'user';
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: [{ CN: [req.name] }, { O: ['bpfleet'] }],
    issuer: ca.cert.subjectName,
    ...window,
    signingAlgorithm: SIGNING_ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: ca.key,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(server ? [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth] : [x509.ExtendedKeyUsage.clientAuth]),
      new x509.AuthorityKeyIdentifierExtension(caKeyId),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      new x509.SubjectAlternativeNameExtension([
        { type: 'url', value: checked.spiffeId },
        ...checked.dns.map((value) => ({ type: 'dns' as const, value })),
        ...checked.ips.map((value) => ({ type: 'ip' as const, value })),
      ]),
    ],
  });
  return { cert, certPem: certPem(cert), keyPem: await keyPem(keys.privateKey) };
}

/** The trust domain a bpfleet CA certificate names in its URI SAN; throws INVALID_ARGUMENT if it names none. */
export function trustDomainOfCa(cert: x509.X509Certificate): string {
  const uris = (cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.items ?? []).filter((n) => n.type === 'url');
  const td = uris.length === 1 ? /^spiffe:\/\/([^/]+)$/.exec(uris[0]!.value)?.[1] : undefined;
  if (td === undefined || !isTrustDomain(td)) throw invalid(`CA "${cert.subject}" names no trust domain (a URI SAN spiffe://<trust-domain>)`);
  return td;
}

/** What `bpfleet pki show` prints; times are ISO 8601 UTC. */
export interface CertificateSummary {
  subject: string;
  issuer: string;
  serialNumber: string;
  /** SHA-256 of the DER encoding, hex. */
  fingerprintSha256: string;
  notBefore: string;
  notAfter: string;
  expired: boolean;
  isCa: boolean;
  identity: Identity | null;
  /** Why there is no identity; absent when there is one. */
  noIdentityReason?: string;
  sans: { uri: string[]; dns: string[]; ip: string[]; email: string[] };
  extendedKeyUsages: string[];
}

const EKU_NAMES = new Map<string, string>(Object.entries(x509.ExtendedKeyUsage).map(([name, oid]) => [oid, name]));

/** Reads a certificate for display; `trustDomain` as in readIdentity. Throws INVALID_ARGUMENT if it is not one. */
export function describeCertificate(input: CertificateInput, trustDomain: string | null, now: Date = new Date()): CertificateSummary {
  let cert: x509.X509Certificate;
  try {
    cert = toCertificate(input);
  } catch (err) {
    throw invalid(`not an X.509 certificate: ${(err as Error).message}`);
  }
  const names = cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.items ?? [];
  const of = (type: string) => names.filter((n) => n.type === type).map((n) => n.value);
  const result = readIdentity(input, trustDomain);
  return {
    subject: cert.subject,
    issuer: cert.issuer,
    serialNumber: cert.serialNumber,
    fingerprintSha256: createHash('sha256').update(new Uint8Array(cert.rawData)).digest('hex'),
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
    expired: now > cert.notAfter,
    isCa: cert.getExtension(x509.BasicConstraintsExtension)?.ca ?? false,
    identity: result.identity,
    ...(result.identity ? {} : { noIdentityReason: result.reason }),
    sans: { uri: of('url'), dns: of('dns'), ip: of('ip'), email: of('email') },
    extendedKeyUsages: (cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages ?? []).map((u) => EKU_NAMES.get(String(u)) ?? String(u)),
  };
}

async function generateKeys(): Promise<CryptoKeyPair> {
  // Extractable: the private key is written to its file once; nothing else exports it.
  return await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify']) as CryptoKeyPair;
}

/** PEM text ending in a newline, as tools that concatenate PEM files expect. */
export function certPem(cert: x509.X509Certificate): string {
  return `${cert.toString('pem').trim()}\n`;
}

async function keyPem(key: CryptoKey): Promise<string> {
  return `${x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', key as webcrypto.CryptoKey), 'PRIVATE KEY').trim()}\n`;
}

/** Imports a PKCS#8 PEM P-256 private key for signing. */
export async function importSigningKey(pem: string): Promise<CryptoKey> {
  return await webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(pem), KEY_ALGORITHM, false, ['sign']) as CryptoKey;
}

function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  // First octet 0x40-0x7f: the INTEGER is positive and exactly 16 octets long.
  bytes[0] = (bytes[0]! & 0x3f) | 0x40;
  return Buffer.from(bytes).toString('hex');
}
