/**
 * A fleet PKI in a directory: create the CA, issue certificates, rotate the CA.
 *
 * Layout of `dir` (created mode 0700):
 *   ca.crt        the trust bundle, PEM: the current CA first, then the previous one while a
 *                 rotation is in progress. Every server and client trusts this file.
 *   ca.key        the current CA's private key (PKCS#8 PEM, mode 0600).
 *   <name>.crt    a leaf certificate (PEM, 0644); <name>.key its private key (0600). Names
 *                 are unique across kinds because the files are named by them.
 *
 * Each file is replaced atomically (written aside, then renamed), so a reader never sees
 * half a certificate. Errors are BpfleetErrors: INVALID_ARGUMENT naming the field,
 * ALREADY_EXISTS for what would be overwritten without `force`, FAILED_PRECONDITION for a
 * directory in the wrong state.
 */
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { BpfleetError } from '../../common/errors.js';
import type { IdentityKind, Role } from '../../common/identity.js';
import { x509 } from '../../common/x509.js';
import {
  CA_VALIDITY_MS, DEFAULT_CA_VALIDITY_MS, DEFAULT_LEAF_VALIDITY_MS, LEAF_VALIDITY_MS, SKEW_MS,
  certPem, createCa, describeCertificate, importSigningKey, signLeaf, trustDomainOfCa, validityWindow, type Ca, type LeafRequest,
} from './certificates.js';

export const CA_CERT_FILE = 'ca.crt';
export const CA_KEY_FILE = 'ca.key';

export interface CaFiles {
  certPath: string;
  keyPath: string;
  trustDomain: string;
  subject: string;
  notAfter: Date;
}

export interface LeafFiles {
  kind: IdentityKind;
  name: string;
  roles: Role[];
  spiffeId: string;
  certPath: string;
  keyPath: string;
  notAfter: Date;
}

/**
 * Creates the fleet CA in `dir`. Refuses (ALREADY_EXISTS) if ca.crt or ca.key exists,
 * unless `force`: a new CA makes every certificate the old one signed stop verifying.
 * `validityMs` defaults to 5 years.
 */
export async function initCa(dir: string, opts: { trustDomain: string; validityMs?: number; force?: boolean }): Promise<CaFiles> {
  const paths = caPaths(dir);
  if (!opts.force) {
    for (const path of [paths.certPath, paths.keyPath]) {
      if (await exists(path)) {
        throw new BpfleetError('ALREADY_EXISTS', 'CA_EXISTS', `${path} already exists; refusing to replace the fleet CA (every certificate it signed would stop verifying); use --force to replace it, or rotate it`);
      }
    }
  }
  const window = validityWindow(opts.validityMs ?? DEFAULT_CA_VALIDITY_MS, CA_VALIDITY_MS);
  const { ca, certPem, keyPem } = await createCa(opts.trustDomain, window);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await replaceFiles([{ path: paths.keyPath, text: keyPem, mode: 0o600 }, { path: paths.certPath, text: certPem, mode: 0o644 }]);
  return caFiles(dir, ca);
}

/**
 * Issues `<name>.crt` and `<name>.key` in `dir`, signed by its CA. Refuses (ALREADY_EXISTS)
 * to replace either file unless `force` (renewing a certificate). `validityMs` defaults to
 * a year and must end before the CA does.
 */
export async function issue(dir: string, req: LeafRequest & { validityMs?: number; force?: boolean }): Promise<LeafFiles> {
  const { ca } = await loadCa(dir);
  const certPath = join(dir, `${req.name}.crt`);
  const keyPath = join(dir, `${req.name}.key`);
  const window = validityWindow(req.validityMs ?? DEFAULT_LEAF_VALIDITY_MS, LEAF_VALIDITY_MS);
  const issued = await signLeaf(ca, req, window);
  if (!req.force) {
    for (const path of [certPath, keyPath]) {
      if (await exists(path)) throw new BpfleetError('ALREADY_EXISTS', 'CERTIFICATE_EXISTS', `${path} already exists; use --force to replace it (renewal)`);
    }
  }
  await replaceFiles([{ path: keyPath, text: issued.keyPem, mode: 0o600 }, { path: certPath, text: issued.certPem, mode: 0o644 }]);
  return leafFiles(dir, issued.cert, ca.trustDomain);
}

export interface Rotation {
  ca: CaFiles;
  /** Subject of the CA that signed until now; still trusted through ca.crt. */
  previous: string;
  reissued: LeafFiles[];
}

/**
 * Rotates the CA: a new CA (same trust domain; `validityMs` defaults to the current CA's
 * lifetime), ca.crt trusting both the new and the current CA, and every leaf certificate in
 * `dir` re-issued by the new CA with a new key, the same identity and addresses, and its
 * previous lifetime. While both CAs are trusted, old and new certificates work side by side:
 * hand out ca.crt first, then the new certificates, then call finishRotation.
 *
 * Refuses (FAILED_PRECONDITION) while a previous rotation is unfinished (ca.crt holds two
 * CAs: rotating again would drop the one that certificates still in use were signed by),
 * and if a .crt in `dir` is not a bpfleet leaf of this trust domain named after its file.
 */
export async function rotate(dir: string, opts: { validityMs?: number } = {}): Promise<Rotation> {
  const { ca: current, bundle } = await loadCa(dir);
  if (bundle.length > 1) {
    throw new BpfleetError('FAILED_PRECONDITION', 'ROTATION_UNFINISHED', `${join(dir, CA_CERT_FILE)} still trusts the previous CA "${bundle[1]!.subject}"; once every holder has its new certificate, finish that rotation (bpfleet pki rotate --finish) before rotating again`);
  }
  const leaves = await readLeaves(dir, current.trustDomain);
  const lifetime = current.cert.notAfter.getTime() - current.cert.notBefore.getTime() - SKEW_MS;
  const now = new Date();
  const { ca, keyPem } = await createCa(current.trustDomain, validityWindow(opts.validityMs ?? clamp(lifetime, CA_VALIDITY_MS), CA_VALIDITY_MS, now));
  // The bundle first: by the time the new CA has signed anything on disk, ca.crt trusts it.
  const files: FileContent[] = [
    { path: join(dir, CA_CERT_FILE), text: bundlePem([ca.cert, current.cert]), mode: 0o644 },
    { path: join(dir, CA_KEY_FILE), text: keyPem, mode: 0o600 },
  ];
  const reissued: x509.X509Certificate[] = [];
  for (const leaf of leaves) {
    const issued = await signLeaf(ca, leaf.request, validityWindow(clamp(leaf.lifetimeMs, LEAF_VALIDITY_MS), LEAF_VALIDITY_MS, now));
    files.push(
      { path: join(dir, `${leaf.request.name}.key`), text: issued.keyPem, mode: 0o600 },
      { path: join(dir, `${leaf.request.name}.crt`), text: issued.certPem, mode: 0o644 },
    );
    reissued.push(issued.cert);
  }
  await replaceFiles(files);
  return { ca: caFiles(dir, ca), previous: current.cert.subject, reissued: reissued.map((c) => leafFiles(dir, c, ca.trustDomain)) };
}

/**
 * Ends a rotation: ca.crt trusts only the current CA again. Certificates the previous CA
 * signed stop verifying wherever the new ca.crt is installed. Returns the subjects of the
 * CAs no longer trusted (none if no rotation was in progress).
 */
export async function finishRotation(dir: string): Promise<{ dropped: string[] }> {
  const { ca, bundle } = await loadCa(dir);
  if (bundle.length > 1) await replaceFiles([{ path: join(dir, CA_CERT_FILE), text: bundlePem([ca.cert]), mode: 0o644 }]);
  return { dropped: bundle.slice(1).map((c) => c.subject) };
}

/**
 * Reads the CA of `dir`: the signing CA (first in ca.crt, matching ca.key) and the whole
 * bundle. Throws FAILED_PRECONDITION if there is none or the files do not belong together.
 */
export async function loadCa(dir: string): Promise<{ ca: Ca; bundle: x509.X509Certificate[] }> {
  const { certPath, keyPath } = caPaths(dir);
  const [bundleText, keyText] = await Promise.all([certPath, keyPath].map((p) => readFile(p, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') throw new BpfleetError('FAILED_PRECONDITION', 'NO_CA', `${p} does not exist: create the fleet CA first (bpfleet pki init --dir ${dir})`);
    throw new BpfleetError('FAILED_PRECONDITION', 'NO_CA', `cannot read ${p}: ${err.message}`);
  })));
  const bundle = parseBundle(bundleText!, certPath);
  const cert = bundle[0]!;
  let spki: Buffer;
  try {
    spki = createPublicKey(createPrivateKey(keyText!)).export({ type: 'spki', format: 'der' });
  } catch (err) {
    throw new BpfleetError('FAILED_PRECONDITION', 'BAD_CA', `${keyPath}: not a PEM private key: ${(err as Error).message}`);
  }
  if (!spki.equals(Buffer.from(cert.publicKey.rawData))) {
    throw new BpfleetError('FAILED_PRECONDITION', 'BAD_CA', `${keyPath} is not the key of the first certificate in ${certPath} ("${cert.subject}")`);
  }
  return { ca: { cert, key: await importSigningKey(keyText!), trustDomain: trustDomainOfCa(cert) }, bundle };
}

function parseBundle(text: string, path: string): x509.X509Certificate[] {
  const blocks = x509.PemConverter.decodeWithHeaders(text);
  if (!blocks.length || blocks.some((b) => b.type !== 'CERTIFICATE')) {
    throw new BpfleetError('FAILED_PRECONDITION', 'BAD_CA', `${path}: expected one or more PEM CERTIFICATE blocks`);
  }
  return blocks.map((b) => new x509.X509Certificate(b.rawData));
}

interface LeafOnDisk {
  request: LeafRequest;
  lifetimeMs: number;
}

async function readLeaves(dir: string, trustDomain: string): Promise<LeafOnDisk[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.crt') && f !== CA_CERT_FILE).sort();
  const leaves: LeafOnDisk[] = [];
  for (const file of files) {
    const path = join(dir, file);
    const s = describeCertificate(await readFile(path, 'utf8'), trustDomain);
    const id = s.identity;
    if (!id || `${id.name}.crt` !== file) {
      throw new BpfleetError('FAILED_PRECONDITION', 'FOREIGN_CERTIFICATE', `${path}: ${id ? `identity ${id.spiffeId} is not named after the file` : s.noIdentityReason}; this PKI cannot re-issue it: move it out of ${dir}`);
    }
    const sans = id.kind === 'user' ? [] : [...s.sans.dns, ...s.sans.ip];
    leaves.push({
      request: { kind: id.kind, name: id.name, roles: id.roles, sans },
      lifetimeMs: Date.parse(s.notAfter) - Date.parse(s.notBefore) - SKEW_MS,
    });
  }
  return leaves;
}

function bundlePem(certs: x509.X509Certificate[]): string {
  return certs.map(certPem).join('');
}

const clamp = (ms: number, bounds: { min: number; max: number }) => Math.min(bounds.max, Math.max(bounds.min, ms));

function caPaths(dir: string) {
  return { certPath: join(dir, CA_CERT_FILE), keyPath: join(dir, CA_KEY_FILE) };
}

function caFiles(dir: string, ca: Ca): CaFiles {
  return { ...caPaths(dir), trustDomain: ca.trustDomain, subject: ca.cert.subject, notAfter: ca.cert.notAfter };
}

function leafFiles(dir: string, cert: x509.X509Certificate, trustDomain: string): LeafFiles {
  const id = describeCertificate(new Uint8Array(cert.rawData), trustDomain).identity!;
  return {
    kind: id.kind, name: id.name, roles: id.roles, spiffeId: id.spiffeId,
    certPath: join(dir, `${id.name}.crt`), keyPath: join(dir, `${id.name}.key`), notAfter: cert.notAfter,
  };
}

async function exists(path: string): Promise<boolean> {
  // Anything but "no such file" counts as there: never overwrite what could not be checked.
  return await stat(path).then(() => true, (err: NodeJS.ErrnoException) => err.code !== 'ENOENT');
}

interface FileContent {
  path: string;
  text: string;
  mode: number;
}

/**
 * Writes every file aside (exact `mode`, synced), then renames them into place in order:
 * each file is replaced atomically, and nothing is replaced unless all were written.
 */
async function replaceFiles(files: FileContent[]): Promise<void> {
  const written: string[] = [];
  try {
    for (const f of files) {
      const tmp = `${f.path}.${randomBytes(6).toString('hex')}.tmp`;
      const handle = await open(tmp, 'wx', f.mode);
      written.push(tmp);
      try {
        // The mode given to open() is narrowed by the umask; set it exactly.
        await handle.chmod(f.mode);
        await handle.writeFile(f.text);
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
  } catch (err) {
    await Promise.all(written.map((tmp) => rm(tmp, { force: true })));
    throw new BpfleetError('FAILED_PRECONDITION', 'CANNOT_WRITE', `cannot write ${files.map((f) => f.path).join(', ')}: ${(err as Error).message}`, undefined, { cause: err });
  }
  for (const [i, f] of files.entries()) await rename(written[i]!, f.path);
}
