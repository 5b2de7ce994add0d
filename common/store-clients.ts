/**
 * How the daemons reach etcd and NATS: endpoints plus, for each, the TLS files they present
 * (the config's etcd.tls and nats.tls: `--etcd-ca/--etcd-cert/--etcd-key`,
 * `--nats-ca/--nats-cert/--nats-key`, or the BPFLEET_ETCD_CA... environment). The servers map the client certificate to a user with
 * its permissions (docs/SECURITY.md): etcd by the subject CN, NATS by the SPIFFE URI SAN.
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from 'commander';
import { Etcd3, type IOptions } from 'etcd3';
import type { TlsOptions } from '@nats-io/transport-node';
import type { Logger } from './log.js';

/** PEM files: the CA bundle that signs the server, and the client's certificate and key. */
export interface ClientTls {
  caPath: string;
  certPath: string;
  keyPath: string;
}

export interface StoreTls {
  etcd?: ClientTls;
  nats?: ClientTls;
}

const STORES = [['etcd', 'etcd'], ['nats', 'NATS']] as const;

/** A store's `tls` section of a daemon's config (common/config/schema.ts). */
interface TlsSection {
  ca: string;
  cert?: string;
  key?: string;
}

/**
 * The TLS files a daemon's config names for each store (from its file, BPFLEET_<STORE>_CA|
 * CERT|KEY or --<store>-ca|cert|key). A section without cert and key is refused with the
 * field named: the stores identify a daemon by its client certificate.
 */
export function storeTlsFromConfig(config: { etcd: { tls?: TlsSection }; nats: { tls?: TlsSection } }): StoreTls {
  const out: StoreTls = {};
  for (const [store] of STORES) {
    const tls = config[store].tls;
    if (!tls) continue;
    if (!tls.cert || !tls.key) {
      throw new InvalidArgumentError(`${store}.tls: cert and key are required as well as ca (--${store}-cert, --${store}-key): ${store} maps the client certificate to this daemon's user`);
    }
    out[store] = { caPath: tls.ca, certPath: tls.cert, keyPath: tls.key };
  }
  return out;
}

/** Warns, once at start, for each store reached without TLS: anyone on the path can read and write as this daemon. */
export function warnPlainStores(tls: StoreTls, log: Logger): void {
  for (const [store, name] of STORES) {
    if (!tls[store]) log.warn({ store }, `${name} without TLS or a client certificate: only for experiments (see docs/SECURITY.md)`);
  }
}

/**
 * An etcd client for `endpoints` (http:// or https:// URLs), presenting `tls` when given.
 * Reads the files now; a missing or unreadable one throws an Error naming it.
 */
export function etcdClient(endpoints: string[], tls?: ClientTls, options: Omit<IOptions, 'hosts' | 'credentials'> = {}): Etcd3 {
  if (!tls) return new Etcd3({ ...options, hosts: endpoints });
  return new Etcd3({
    ...options,
    hosts: endpoints,
    credentials: { rootCertificate: readPem(tls.caPath), certChain: readPem(tls.certPath), privateKey: readPem(tls.keyPath) },
  });
}

/** NATS client TLS options for `tls` (the files read now, as etcdClient does), or undefined. */
export function natsTls(tls?: ClientTls): TlsOptions | undefined {
  if (!tls) return undefined;
  return { ca: readPem(tls.caPath).toString(), cert: readPem(tls.certPath).toString(), key: readPem(tls.keyPath).toString() };
}

function readPem(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}
