/**
 * Transport security for bpfleet's gRPC servers and clients: mutual TLS with the fleet's
 * certificates, or an explicit, loudly announced insecure mode. The one place where files
 * become grpc-js credentials.
 *
 * A daemon's own certificate fixes the fleet's trust domain: peers are read against the
 * trust domain of the SPIFFE ID the daemon itself holds (common/identity.ts), so an
 * external CA that signs for several trust domains still only admits this fleet's.
 */
import { readFileSync } from 'node:fs';
import { ChannelCredentials, credentials, ServerCredentials } from '@grpc/grpc-js';
import type { Command } from 'commander';
import { BpfleetError } from './errors.js';
import { readIdentity, type Identity } from './identity.js';

/** The three files of a TLS identity: the trust bundle (fleet CA certificates), our certificate (chain) and its key. */
export interface TlsFiles {
  ca: string;
  cert: string;
  key: string;
}

export type TransportSecurity =
  | { mode: 'mtls'; ca: Buffer; cert: Buffer; key: Buffer; files: TlsFiles; /** What our own certificate says we are. */ self: Identity }
  | { mode: 'insecure' };

/** What a daemon or the CLI was told on its command line (or env, or config file). */
export interface TransportOptions {
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  insecure?: boolean;
}

/** The warning every insecure start and every insecure CLI command prints. */
export const INSECURE_WARNING = 'INSECURE: TLS is off; anyone who can reach this port can act as any identity with every role. For experiments only.';

/** Files larger than this are not certificates or keys (a bundle of 100 CAs is ~70 KiB). */
const MAX_PEM_BYTES = 1 << 20;

const tlsError = (message: string) => new BpfleetError('INVALID_ARGUMENT', 'TLS_CONFIG', message);

/**
 * Reads the transport security `who` (e.g. "bpfleet-control") was configured with. TLS needs
 * all three of `tlsCa`, `tlsCert`, `tlsKey` (`flags` names them as the caller spells them);
 * `insecure` turns TLS off and excludes them. Neither is INVALID_ARGUMENT/INSECURE_NOT_CHOSEN:
 * nothing runs without TLS unless asked to. Unreadable files, a certificate without a bpfleet
 * identity, or a key that does not match are INVALID_ARGUMENT/TLS_CONFIG naming the file.
 */
export function loadTransport(opts: TransportOptions, who: string, flags = { ca: '--tls-ca', cert: '--tls-cert', key: '--tls-key', insecure: '--insecure' }): TransportSecurity {
  const given = [opts.tlsCa, opts.tlsCert, opts.tlsKey].filter(Boolean).length;
  if (opts.insecure) {
    if (given) throw tlsError(`${who}: ${flags.insecure} and TLS files (${flags.ca}, ${flags.cert}, ${flags.key}) exclude each other`);
    return { mode: 'insecure' };
  }
  if (given === 0) {
    throw new BpfleetError('INVALID_ARGUMENT', 'INSECURE_NOT_CHOSEN',
      `${who}: no TLS certificate given: pass ${flags.ca} <fleet CA bundle> ${flags.cert} <certificate> ${flags.key} <key> (see \`bpfleet pki\`), or ${flags.insecure} to run without TLS (experiments only)`);
  }
  const missing = ([['ca', opts.tlsCa], ['cert', opts.tlsCert], ['key', opts.tlsKey]] as const).filter(([, v]) => !v).map(([k]) => flags[k]);
  if (missing.length) throw tlsError(`${who}: TLS needs ${flags.ca}, ${flags.cert} and ${flags.key}; missing ${missing.join(', ')}`);
  const files: TlsFiles = { ca: opts.tlsCa!, cert: opts.tlsCert!, key: opts.tlsKey! };
  const ca = readPem(files.ca, flags.ca, 'CERTIFICATE');
  const cert = readPem(files.cert, flags.cert, 'CERTIFICATE');
  const key = readPem(files.key, flags.key, 'PRIVATE KEY');
  const own = readIdentity(cert.toString(), null);
  if (!own.identity) throw tlsError(`${flags.cert} ${files.cert}: no bpfleet identity: ${own.reason}`);
  try {
    // Fails when the key does not belong to the certificate (or either is unreadable).
    credentials.createSsl(ca, key, cert);
  } catch (err) {
    throw tlsError(`${flags.cert} ${files.cert} / ${flags.key} ${files.key}: ${(err as Error).message}`);
  }
  return { mode: 'mtls', ca, cert, key, files, self: own.identity };
}

function readPem(path: string, flag: string, block: string): Buffer {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (err) {
    throw tlsError(`${flag} ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  if (data.length > MAX_PEM_BYTES) throw tlsError(`${flag} ${path}: ${data.length} bytes is over the ${MAX_PEM_BYTES}-byte limit for PEM files`);
  if (!data.includes(`-----BEGIN ${block}-----`) && !(block === 'PRIVATE KEY' && /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(data.toString()))) {
    throw tlsError(`${flag} ${path}: no PEM ${block} block`);
  }
  return data;
}

/**
 * Server credentials: with mTLS, a client certificate chaining to the bundle is required
 * (grpc-js refuses the handshake otherwise, before any handler runs).
 */
export function serverCredentials(t: TransportSecurity): ServerCredentials {
  if (t.mode === 'insecure') return ServerCredentials.createInsecure();
  return ServerCredentials.createSsl(t.ca, [{ private_key: t.key, cert_chain: t.cert }], true);
}

/**
 * Client credentials: our certificate as the client identity, the bundle to verify the
 * server, whose certificate must name the address dialled (an IP or DNS SAN).
 */
export function channelCredentials(t: TransportSecurity): ChannelCredentials {
  if (t.mode === 'insecure') return credentials.createInsecure();
  return credentials.createSsl(t.ca, t.key, t.cert);
}

/** Adds --tls-ca, --tls-cert, --tls-key and --insecure (env BPFLEET_TLS_CA, _CERT, _KEY) to a daemon's command line. */
export function addTlsOptions<C extends Command>(program: C): C {
  program
    .option('--tls-ca <file>', 'fleet CA bundle (PEM): peers must present a certificate it signed (env BPFLEET_TLS_CA)', process.env.BPFLEET_TLS_CA)
    .option('--tls-cert <file>', 'this daemon\'s certificate (PEM), from `bpfleet pki issue` (env BPFLEET_TLS_CERT)', process.env.BPFLEET_TLS_CERT)
    .option('--tls-key <file>', 'its private key (PEM) (env BPFLEET_TLS_KEY)', process.env.BPFLEET_TLS_KEY)
    .option('--insecure', 'run without TLS: no authentication, no roles; for experiments only');
  return program;
}

/**
 * The transport security a daemon's config (its `grpc` section: file, BPFLEET_TLS_* or
 * --tls-* / --insecure; common/config/schema.ts) asks for, read as loadTransport reads flags;
 * no section is INVALID_ARGUMENT/INSECURE_NOT_CHOSEN.
 */
export function transportFromConfig(grpc: { tls: TlsFiles } | { insecure: true } | undefined, who: string): TransportSecurity {
  if (grpc && 'insecure' in grpc) return loadTransport({ insecure: true }, who);
  return loadTransport({ tlsCa: grpc?.tls.ca, tlsCert: grpc?.tls.cert, tlsKey: grpc?.tls.key }, who);
}
