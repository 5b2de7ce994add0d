import { access, open } from 'node:fs/promises';
import { BpfleetError } from '../../common/errors.js';
import { generateKeyPair } from '../../common/signing.js';

export interface KeyFiles {
  privatePath: string;
  publicPath: string;
  keyId: string;
}

/**
 * Writes a new ed25519 key pair as `<prefix>.private.pem` (mode 0600) and
 * `<prefix>.public.pem`. Never overwrites: losing a signing key to a typo is worse than
 * an error.
 */
export async function createKeyFiles(prefix: string): Promise<KeyFiles> {
  const privatePath = `${prefix}.private.pem`;
  const publicPath = `${prefix}.public.pem`;
  for (const path of [privatePath, publicPath]) {
    if (await access(path).then(() => true, () => false)) {
      throw new BpfleetError('ALREADY_EXISTS', 'KEY_EXISTS', `${path} already exists; refusing to overwrite a key (choose another --out)`);
    }
  }
  const pair = generateKeyPair();
  await writeNew(privatePath, pair.privateKey, 0o600);
  await writeNew(publicPath, pair.publicKey, 0o644);
  return { privatePath, publicPath, keyId: pair.keyId };
}

// 'wx' fails if the file appeared since the check above, instead of overwriting it.
async function writeNew(path: string, text: string, mode: number): Promise<void> {
  const file = await open(path, 'wx', mode).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'EEXIST') throw new BpfleetError('ALREADY_EXISTS', 'KEY_EXISTS', `${path} already exists; refusing to overwrite a key`);
    throw new BpfleetError('INVALID_ARGUMENT', 'USAGE', `cannot write ${path}: ${err.message}`);
  });
  try {
    // The mode given to open() is narrowed by the umask; set it exactly.
    await file.chmod(mode);
    await file.writeFile(text);
  } finally {
    await file.close();
  }
}
