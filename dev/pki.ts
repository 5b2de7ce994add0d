/**
 * The local fleet's certificates: one fleet CA and a certificate for each identity a local
 * fleet needs (the control plane, every host, and one user per role), issued with the same
 * code as `bpfleet pki` so the demo and the tests run on what an operator would make.
 */
import { join } from 'node:path';
import { ROLES, type Role } from '../common/identity.js';
import { CA_CERT_FILE, initCa, issue, type LeafFiles } from '../control/pki/pki.js';

/** The trust domain of local fleets' certificates (the SPIFFE ID's authority). */
export const DEV_TRUST_DOMAIN = 'bpfleet.dev';

/** A certificate and its key, as file paths, with the identity it carries. */
export interface DevCertificate {
  certPath: string;
  keyPath: string;
  /** The SPIFFE ID, e.g. spiffe://bpfleet.dev/bpfleet/host/h1. */
  spiffeId: string;
  /** The subject's CN: the name (etcd maps a client certificate's CN to its user). */
  name: string;
}

export interface FleetPki {
  dir: string;
  /** The trust bundle every server and client trusts. */
  caPath: string;
  control: DevCertificate;
  hosts: Map<string, DevCertificate>;
  /** One user per role, named after it (`admin`, `operator`, ...). */
  users: Record<Role, DevCertificate>;
}

export interface FleetPkiOptions {
  /** Host names; each gets a host certificate naming it. */
  hosts: readonly string[];
  /**
   * Extra addresses the control plane and every host serve on (IPs or DNS names), beyond
   * 127.0.0.1, ::1 and localhost, which every server certificate carries.
   */
  sans?: readonly string[];
  /** Per-host extra addresses (e.g. the host's address in its network namespace). */
  hostSans?: ReadonlyMap<string, readonly string[]>;
}

/**
 * Creates a fleet PKI in `dir` (an empty or missing directory; it is created 0700). Takes
 * about 10 ms per certificate (ECDSA P-256). Errors are those of initCa/issue: INVALID_ARGUMENT
 * naming the field for a bad host name or address.
 */
export async function createFleetPki(dir: string, opts: FleetPkiOptions): Promise<FleetPki> {
  await initCa(dir, { trustDomain: DEV_TRUST_DOMAIN });
  const sans = [...(opts.sans ?? [])];
  const control = devCertificate(await issue(dir, { kind: 'control', name: 'control', sans }));
  const hosts = new Map<string, DevCertificate>();
  for (const host of opts.hosts) {
    const hostSans = [...sans, ...(opts.hostSans?.get(host) ?? [])];
    hosts.set(host, devCertificate(await issue(dir, { kind: 'host', name: host, sans: hostSans })));
  }
  const users = {} as Record<Role, DevCertificate>;
  for (const role of ROLES) users[role] = devCertificate(await issue(dir, { kind: 'user', name: role, roles: [role] }));
  return { dir, caPath: join(dir, CA_CERT_FILE), control, hosts, users };
}

function devCertificate(leaf: LeafFiles): DevCertificate {
  return { certPath: leaf.certPath, keyPath: leaf.keyPath, spiffeId: leaf.spiffeId, name: leaf.name };
}
