/**
 * How the daemons reach etcd and NATS: endpoints plus, for each, the TLS files they present
 * (`--etcd-ca/--etcd-cert/--etcd-key`, `--nats-ca/--nats-cert/--nats-key`, or the
 * BPFLEET_ETCD_CA... environment). The servers map the client certificate to a user with
 * its permissions (docs/SECURITY.md): etcd by the subject CN, NATS by the SPIFFE URI SAN.
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
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

/** Adds the six TLS flags; each defaults to its BPFLEET_<STORE>_<PART> environment variable. */
export function addStoreTlsOptions(command: Command): Command {
  for (const [store, name] of STORES) {
    const env = (part: string) => process.env[`BPFLEET_${store.toUpperCase()}_${part}`];
    command
      .option(`--${store}-ca <file>`, `CA bundle (PEM) that signs the ${name} server's certificate (env BPFLEET_${store.toUpperCase()}_CA)`, env('CA'))
      .option(`--${store}-cert <file>`, `client certificate (PEM) this daemon presents to ${name}`, env('CERT'))
      .option(`--${store}-key <file>`, `its private key (PEM)`, env('KEY'));
  }
  return command;
}

/**
 * The TLS files the flags name, per store: none of the three (plain connection) or all of
 * them; a partial set throws InvalidArgumentError naming what is missing.
 */
export function storeTlsFromOptions(opts: Record<string, unknown>): StoreTls {
  const out: StoreTls = {};
  for (const [store] of STORES) {
    const parts = { ca: opts[`${store}Ca`], cert: opts[`${store}Cert`], key: opts[`${store}Key`] };
    const given = Object.entries(parts).filter(([, v]) => typeof v === 'string' && v !== '');
    if (given.length === 0) continue;
    if (given.length < 3) {
      const missing = Object.keys(parts).filter((k) => !given.some(([g]) => g === k)).map((k) => `--${store}-${k}`);
      throw new InvalidArgumentError(`${store} TLS needs --${store}-ca, --${store}-cert and --${store}-key together; missing ${missing.join(', ')}`);
    }
    out[store] = { caPath: parts.ca as string, certPath: parts.cert as string, keyPath: parts.key as string };
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
