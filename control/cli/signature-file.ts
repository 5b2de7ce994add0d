import { createPublicKey, verify } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { digestOf } from '../../common/digest.js';
import { BpfleetError } from '../../common/errors.js';
import { parseManifestFile } from '../../common/manifest.js';
import { keyIdOf, KEY_ID_RE, manifestDigest, parsePrivateKey, signingPayload, signModule } from '../../common/signing.js';
import type { ModuleManifest } from '../../proto/gen/bpfleet/v1/module.js';

const FORMAT = 'bpfleet-signature-v1';

/**
 * The detached signature file `module sign` writes and `module push` sends. It repeats
 * what was signed so a stale file (object rebuilt, version bumped) is caught at push time
 * with a clear message, and carries the public key so push can check the bytes; agents
 * never trust that key, only the ones in their --trusted-keys directory.
 */
const signatureFileSchema = z.strictObject({
  format: z.literal(FORMAT),
  module: z.string(),
  digest: z.string(),
  manifest: z.string(),
  keyId: z.string().regex(KEY_ID_RE),
  publicKey: z.string(),
  signature: z.base64(),
});

/** By convention the signature sits next to the object: `<object>.sig`. */
export function signatureFileFor(objectPath: string): string {
  return `${objectPath}.sig`;
}

async function readModuleFiles(manifestPath: string): Promise<{ manifest: ModuleManifest; objectPath: string; object: Buffer }> {
  const text = await readFile(manifestPath, 'utf8').catch((err) => {
    throw new BpfleetError('INVALID_ARGUMENT', 'USAGE', `cannot read ${manifestPath}: ${(err as Error).message}`);
  });
  const { manifest, object } = parseManifestFile(text, manifestPath);
  const objectPath = resolve(dirname(manifestPath), object);
  const bytes = await readFile(objectPath).catch((err) => {
    throw new BpfleetError('INVALID_ARGUMENT', 'USAGE', `${manifestPath}: cannot read object ${objectPath}: ${(err as Error).message}`);
  });
  return { manifest, objectPath, object: bytes };
}

/** Signs the module a manifest describes; returns where the signature was written. */
export async function signModuleFiles(manifestPath: string, keyPath: string, out?: string): Promise<{ path: string; keyId: string; digest: string }> {
  const keyPem = await readFile(keyPath, 'utf8').catch((err) => {
    throw new BpfleetError('INVALID_ARGUMENT', 'USAGE', `cannot read key ${keyPath}: ${(err as Error).message}`);
  });
  const key = parsePrivateKey(keyPem, keyPath);
  const { manifest, objectPath, object } = await readModuleFiles(manifestPath);
  const digest = digestOf(object);
  const { signature, keyId } = signModule(manifest, digest, key);
  const file: z.infer<typeof signatureFileSchema> = {
    format: FORMAT,
    module: `${manifest.name}@${manifest.version}`,
    digest,
    manifest: manifestDigest(manifest),
    keyId,
    publicKey: createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString(),
    signature: Buffer.from(signature).toString('base64'),
  };
  const path = out ?? signatureFileFor(objectPath);
  await writeFile(path, `${JSON.stringify(file, null, 2)}\n`);
  return { path, keyId, digest };
}

/**
 * What `module push` sends for the object at `objectPath`: the signature from its .sig
 * file, or none when there is no such file. A file that does not belong to exactly this
 * module (name, version, object, manifest) or does not verify is an error, not "unsigned".
 */
export async function signatureForPush(objectPath: string, manifest: ModuleManifest, object: Uint8Array): Promise<{ signature: Buffer; keyId: string }> {
  const path = signatureFileFor(objectPath);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { signature: Buffer.alloc(0), keyId: '' };
    throw new BpfleetError('INVALID_ARGUMENT', 'USAGE', `cannot read signature ${path}: ${(err as Error).message}`);
  }
  let parsed: z.infer<typeof signatureFileSchema>;
  try {
    parsed = signatureFileSchema.parse(JSON.parse(text));
  } catch (err) {
    throw new BpfleetError('INVALID_ARGUMENT', 'BAD_SIGNATURE_FILE', `${path}: not a bpfleet signature file: ${(err as Error).message}`);
  }
  const want = { module: `${manifest.name}@${manifest.version}`, digest: digestOf(object), manifest: manifestDigest(manifest) };
  const stale = (Object.keys(want) as (keyof typeof want)[]).filter((k) => parsed[k] !== want[k]);
  if (stale.length) {
    throw new BpfleetError('INVALID_ARGUMENT', 'STALE_SIGNATURE',
      `${path} does not sign this module (${stale.map((k) => `${k}: signed ${parsed[k]}, now ${want[k]}`).join('; ')}); run bpfleet module sign again`);
  }
  const signature = Buffer.from(parsed.signature, 'base64');
  let valid = false;
  try {
    const pub = createPublicKey(parsed.publicKey);
    valid = keyIdOf(pub) === parsed.keyId && verify(null, signingPayload(manifest, want.digest), pub, signature);
  } catch {
    valid = false;
  }
  if (!valid) throw new BpfleetError('INVALID_ARGUMENT', 'BAD_SIGNATURE_FILE', `${path}: the signature does not verify with the key it names; run bpfleet module sign again`);
  return { signature, keyId: parsed.keyId };
}
