/**
 * Who a peer is, read from its X.509 certificate, and what its roles allow.
 *
 * The identity is the certificate's one URI subject alternative name (RFC 5280 §4.2.1.6),
 * a SPIFFE ID (SPIFFE-ID §2; X509-SVID §2) of one of three shapes:
 *
 *   spiffe://<trust-domain>/bpfleet/control/<name>                    the control plane
 *   spiffe://<trust-domain>/bpfleet/host/<name>                       an agent; <name> is its host name
 *   spiffe://<trust-domain>/bpfleet/user/<name>/<role>[/<role>...]    an operator or CI robot
 *
 * <name> is a host name as bpfleet spells it (HOST_NAME_RE: lowercase letters, digits,
 * inner dashes, 1-63 characters); roles are viewer, operator, publisher, admin, each at most
 * once and in that order, so one identity has one spelling (audit logs and access lists can
 * compare IDs as strings).
 *
 * Why this encoding:
 * - A URI SAN is what every SPIFFE issuer writes and lets callers set: cert-manager
 *   (`uris:` of a Certificate), SPIRE (the registration entry's SPIFFE ID), openssl
 *   (`subjectAltName = URI:...`). SPIRE chooses the subject itself, so roles in an OU would
 *   not survive it; bpfleet ignores the subject entirely rather than read two fields that
 *   could disagree.
 * - X509-SVID §2 allows exactly one URI SAN, and SPIFFE-ID §2.2 forbids a query
 *   (`?roles=`) in the path, so roles are path segments.
 * - Roles follow the name (not `/bpfleet/<role>/<name>`): people often need two roles (an
 *   operator also views; a release robot publishes and rolls out), which would otherwise
 *   take one certificate per role, and the name keeps one position for every kind.
 *
 * Anything else is no identity: no SAN or more than one SAN extension, zero or several URI
 * SANs, another scheme, a trust domain other than the expected one, a path outside these
 * shapes, an unknown, repeated or misordered role, a user without roles, and certificates
 * that X509-SVID §5.2 says must not authenticate anyone (basic constraints cA=true; a key
 * usage extension that is missing, lacks digitalSignature, or allows keyCertSign or cRLSign).
 *
 * These functions read; they do not verify. Pass only a certificate whose chain TLS already
 * verified: grpc-js gives a handler `call.getAuthContext().sslPeerCertificate` only for an
 * authorized TLS socket.
 */
import { HOST_NAME_RE } from './keys.js';
import { x509 } from './x509.js';

export const ROLES = ['viewer', 'operator', 'publisher', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export const IDENTITY_KINDS = ['control', 'host', 'user'] as const;
export type IdentityKind = (typeof IDENTITY_KINDS)[number];

export interface Identity {
  kind: IdentityKind;
  /** The host name for a host; a free choice of the issuer for control and user. */
  name: string;
  /** Canonical order (ROLES); empty for control and host, at least one for a user. */
  roles: Role[];
  trustDomain: string;
  /** The URI SAN it was read from, e.g. spiffe://fleet.example/bpfleet/host/h1. */
  spiffeId: string;
}

/** The identity, or why there is none (for logs and `bpfleet pki show`). */
export type IdentityResult = { identity: Identity; reason?: never } | { identity: null; reason: string };

/**
 * A certificate as bpfleet meets it: PEM text, DER bytes, or what Node and grpc-js give for
 * a TLS peer (a `PeerCertificate`, of which only `raw`, the DER encoding, is read).
 */
export type CertificateInput = string | Uint8Array | { raw: Uint8Array };

/** SPIFFE-ID §2.3: implementations must support IDs up to 2048 bytes; longer ones are refused. */
const MAX_SPIFFE_ID_BYTES = 2048;
/** SPIFFE-ID §2.1: trust domain names are at most 255 characters of [a-z0-9.-_]. */
const TRUST_DOMAIN_RE = /^[a-z0-9._-]{1,255}$/;
/** SPIFFE-ID §2.2: path segments are [a-zA-Z0-9.-_], and never "." or "..". */
const PATH_SEGMENT_RE = /^[A-Za-z0-9._-]+$/;

/** Whether `td` is a valid SPIFFE trust domain name (SPIFFE-ID §2.1). */
export function isTrustDomain(td: string): boolean {
  return TRUST_DOMAIN_RE.test(td);
}

/**
 * The SPIFFE ID that encodes an identity, roles in canonical order. Throws an Error with
 * `parseSpiffeId`'s reason for input it would not read back (a bad name, a repeated role).
 */
export function spiffeIdFor(trustDomain: string, kind: IdentityKind, name: string, roles: readonly Role[] = []): string {
  const ordered = [...roles].sort((a, b) => ROLES.indexOf(a) - ROLES.indexOf(b));
  const id = `spiffe://${trustDomain}/bpfleet/${kind}/${name}${ordered.map((r) => `/${r}`).join('')}`;
  const parsed = parseSpiffeId(id, trustDomain);
  if (!parsed.identity) throw new Error(parsed.reason);
  return id;
}

/**
 * Reads a bpfleet identity from a SPIFFE ID. `trustDomain` is the one the caller trusts;
 * null accepts any (for display only: a server must always pass its own).
 */
export function parseSpiffeId(uri: string, trustDomain: string | null): IdentityResult {
  const no = (reason: string): IdentityResult => ({ identity: null, reason: `${uri}: ${reason}` });
  if (Buffer.byteLength(uri) > MAX_SPIFFE_ID_BYTES) return no(`longer than ${MAX_SPIFFE_ID_BYTES} bytes`);
  const m = /^spiffe:\/\/([^/]*)(\/.*)?$/.exec(uri);
  if (!m) return no('not a SPIFFE ID (spiffe://<trust-domain>/<path>)');
  const td = m[1]!;
  if (!isTrustDomain(td)) return no(`trust domain "${td}": lowercase letters, digits, ".", "-", "_"; no port or user`);
  if (trustDomain !== null && td !== trustDomain) return no(`trust domain "${td}" is not this fleet's ("${trustDomain}")`);
  const segments = (m[2] ?? '').split('/').slice(1);
  if (segments.some((s) => !PATH_SEGMENT_RE.test(s) || s === '.' || s === '..')) {
    return no('path segments are non-empty [A-Za-z0-9._-], not "." or "..", with no query or fragment');
  }
  const [root, kind, name, ...roles] = segments;
  if (root !== 'bpfleet' || !IDENTITY_KINDS.includes(kind as IdentityKind)) {
    return no('path is not /bpfleet/control/<name>, /bpfleet/host/<name> or /bpfleet/user/<name>/<role>...');
  }
  if (name === undefined || !HOST_NAME_RE.test(name)) return no(`name "${name ?? ''}": lowercase letters, digits and inner dashes, at most 63`);
  const k = kind as IdentityKind;
  if (k !== 'user' && roles.length) return no(`a ${k} identity has no roles; the path ends at its name`);
  if (k === 'user') {
    if (!roles.length) return no(`a user needs at least one role (${ROLES.join(', ')})`);
    const unknown = roles.find((r) => !ROLES.includes(r as Role));
    if (unknown !== undefined) return no(`role "${unknown}" is not one of ${ROLES.join(', ')}`);
    const canonical = ROLES.filter((r) => roles.includes(r));
    if (canonical.join('/') !== roles.join('/')) return no(`roles are listed once each, in the order ${ROLES.join(', ')}`);
  }
  return { identity: { kind: k, name, roles: roles as Role[], trustDomain: td, spiffeId: uri } };
}

/**
 * Reads the bpfleet identity of a (TLS-verified) certificate; see the module comment for
 * the fields read and the rules. Never throws: unreadable input is a reason too.
 */
export function readIdentity(cert: CertificateInput, trustDomain: string | null): IdentityResult {
  let c: x509.X509Certificate;
  try {
    c = toCertificate(cert);
  } catch (err) {
    return { identity: null, reason: `not an X.509 certificate: ${(err as Error).message}` };
  }
  try {
    return identityOf(c, trustDomain);
  } catch (err) {
    return { identity: null, reason: `unreadable extension: ${(err as Error).message}` };
  }
}

function identityOf(c: x509.X509Certificate, trustDomain: string | null): IdentityResult {
  const no = (reason: string): IdentityResult => ({ identity: null, reason });
  const basic = c.getExtensions(x509.BasicConstraintsExtension);
  if (basic.length > 1 || basic[0]?.ca) return no('a CA certificate identifies no one (X509-SVID §5.2)');
  const usage = c.getExtensions(x509.KeyUsagesExtension);
  if (usage.length !== 1) return no('no key usage extension (X509-SVID §4.3 requires one)');
  const flags = usage[0]!.usages;
  if (!(flags & x509.KeyUsageFlags.digitalSignature)) return no('key usage lacks digitalSignature');
  if (flags & (x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign)) return no('key usage allows signing certificates or CRLs (X509-SVID §5.2)');
  const sans = c.getExtensions(x509.SubjectAlternativeNameExtension);
  if (sans.length !== 1) return no(sans.length ? 'more than one subject alternative name extension' : 'no subject alternative name extension');
  const uris = sans[0]!.names.items.filter((n) => n.type === 'url').map((n) => n.value);
  if (uris.length !== 1) return no(`${uris.length} URI SANs; a bpfleet identity is exactly one (X509-SVID §2)`);
  return parseSpiffeId(uris[0]!, trustDomain);
}

/** Parses PEM, DER or a peer certificate's `raw`; throws on anything else. */
export function toCertificate(cert: CertificateInput): x509.X509Certificate {
  if (typeof cert === 'string') {
    if (!cert.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM CERTIFICATE block');
    return new x509.X509Certificate(cert);
  }
  // A copy: the library wants bytes on a plain ArrayBuffer, and a Buffer may be a view of a shared pool.
  return new x509.X509Certificate(new Uint8Array(cert instanceof Uint8Array ? cert : cert.raw));
}

/**
 * Whether `identity` may act in role `needed`. Deny by default: no identity, a control or
 * host identity (they are allowed by kind where needed, never by role), or a user without
 * the role is refused; `admin` implies every role.
 */
export function authorize(identity: Identity | null | undefined, needed: Role): boolean {
  if (!identity || identity.kind !== 'user') return false;
  return identity.roles.includes('admin') || identity.roles.includes(needed);
}
