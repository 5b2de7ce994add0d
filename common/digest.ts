import { createHash } from 'node:crypto';

/** Content address of a module object: "sha256:<hex>". */
export function digestOf(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

export const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

export function shortDigest(digest: string): string {
  return digest.replace(/^sha256:/, '').slice(0, 12);
}
