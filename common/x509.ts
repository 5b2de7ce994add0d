/**
 * @peculiar/x509, ready to use on Node: import it from here, never directly.
 *
 * The library resolves its internals through tsyringe, which throws at load time unless a
 * Reflect metadata polyfill is installed first (see the library's README, "Reflect Polyfill
 * Required"); ES modules evaluate their imports in order, so the polyfill import below runs
 * before the library's. It signs and hashes through WebCrypto: Node's own implementation
 * (OpenSSL underneath) is set as its provider once, here.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';

// Node's webcrypto.Crypto is the WebCrypto interface; its typings differ from the DOM lib's
// only in how they spell buffer types.
x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };
