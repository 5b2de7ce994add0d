/**
 * etcd and NATS of a local fleet secured the way docs/SECURITY.md says to: TLS with client
 * certificates from the fleet CA, etcd users and roles (control/access/etcd-access.ts), NATS
 * users and permissions (control/access/nats-access.ts), and the flags that make a daemon
 * present its certificate to both.
 */
import { randomBytes } from 'node:crypto';
import { setUpEtcdAccess } from '../control/access/etcd-access.js';
import { natsAuthorizationConfig, natsUsers } from '../control/access/nats-access.js';
import { issue } from '../control/pki/pki.js';
import { etcdClient, type ClientTls } from '../common/store-clients.js';
import type { EtcdTls } from './etcd.js';
import type { NatsTls } from './nats.js';
import { DEV_TRUST_DOMAIN, type DevCertificate, type FleetPki } from './pki.js';

/** Names of the etcd and NATS servers' certificates in the fleet PKI. */
const ETCD_SERVER = 'etcd-server';
const NATS_SERVER = 'nats-server';

export interface StoreServerTls {
  etcd: EtcdTls;
  nats: NatsTls;
}

/**
 * Server certificates for etcd and NATS, issued into the PKI (host-kind certificates, the
 * kind that serves; their names are users in neither store, so they open nothing), and
 * NATS's users for the control plane and `hosts`.
 */
export async function storeServerTls(pki: FleetPki, hosts: readonly string[], sans: readonly string[] = []): Promise<StoreServerTls> {
  const server = async (name: string) => {
    const leaf = await issue(pki.dir, { kind: 'host', name, sans: [...sans] });
    return { caPath: pki.caPath, certPath: leaf.certPath, keyPath: leaf.keyPath };
  };
  const authorization = natsAuthorizationConfig(natsUsers({ trustDomain: DEV_TRUST_DOMAIN, controlNames: [pki.control.name], hosts }));
  return { etcd: await server(ETCD_SERVER), nats: { ...(await server(NATS_SERVER)), authorization } };
}

/** The TLS files a certificate's holder presents to etcd and NATS. */
export function clientTls(pki: FleetPki, cert: DevCertificate): ClientTls {
  return { caPath: pki.caPath, certPath: cert.certPath, keyPath: cert.keyPath };
}

/** The daemon flags that present these files to etcd and NATS. */
export function storeTlsFlags(t: ClientTls): string[] {
  return ['--etcd-ca', t.caPath, '--etcd-cert', t.certPath, '--etcd-key', t.keyPath, '--nats-ca', t.caPath, '--nats-cert', t.certPath, '--nats-key', t.keyPath];
}

/**
 * Creates the control plane's and every host's etcd users and roles and turns auth on,
 * connecting with the control plane's certificate (any certificate may manage users until
 * auth is on). Returns the root password it set; callers keep it for later changes.
 */
export async function enableEtcdAccess(endpoints: string[], pki: FleetPki, hosts: readonly string[]): Promise<string> {
  const rootPassword = randomBytes(24).toString('base64url');
  const etcd = etcdClient(endpoints, clientTls(pki, pki.control));
  try {
    await setUpEtcdAccess(etcd, { controlUsers: [pki.control.name], hosts, rootPassword });
  } finally {
    etcd.close();
  }
  return rootPassword;
}
