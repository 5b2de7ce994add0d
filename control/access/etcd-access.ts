/**
 * etcd users, roles and key permissions for a fleet (etcd RBAC,
 * https://etcd.io/docs/v3.4/op-guide/authentication/): the control plane may read and write
 * all of /bpfleet/; a host may read the modules, its own intents and the leader election,
 * and write only its own registration and observed state.
 *
 * etcd (3.4, `--client-cert-auth`) takes the user of a request without a password token
 * from the verified client certificate's subject CN, so a user here is named like the CN of
 * its certificate: `bpfleet pki` puts the certificate's name there (the host name for an
 * agent). Users and roles are created once by whoever sets up the fleet (as etcd's root);
 * a host added later gets its user with grantHost().
 */
import { randomBytes } from 'node:crypto';
import { Range, type Etcd3, type IPermissionRequest } from 'etcd3';
import { BpfleetError } from '../../common/errors.js';
import { ELECTION, HOST_NAME_RE, keys, ROOT } from '../../common/keys.js';

/** etcd's own permission words (authpb.Permission.Type). */
export type EtcdPermission = 'Read' | 'Write' | 'Readwrite';

/** One permission of a role: one key, or every key starting with `key` (`prefix`). */
export interface EtcdGrant {
  permission: EtcdPermission;
  key: string;
  prefix: boolean;
}

/** etcd's superuser and its role; a bpfleet identity must never be named so. */
export const ETCD_ROOT = 'root';
export const CONTROL_ROLE = 'bpfleet-control';
export const hostRole = (host: string): string => `bpfleet-host-${host}`;

/** The control plane's permissions: everything under /bpfleet/ (it is the fleet's writer). */
export function controlGrants(): EtcdGrant[] {
  return [{ permission: 'Readwrite', key: ROOT, prefix: true }];
}

/**
 * A host's permissions, each as narrow as the agent's use of it: exact keys for its own
 * records (a prefix grant on /bpfleet/hosts/h1 would also cover /bpfleet/hosts/h10), and
 * prefixes that end in "/" for what it reads. Leases need no grant: etcd checks a lease's
 * revocation against write access to its keys.
 */
export function hostGrants(host: string): EtcdGrant[] {
  checkName(host);
  return [
    { permission: 'Readwrite', key: keys.host(host), prefix: false }, // registration, on its lease
    { permission: 'Readwrite', key: keys.observed(host), prefix: false }, // observed state; read back at start
    { permission: 'Read', key: keys.intentsOf(host), prefix: true }, // list + watch of its intents
    { permission: 'Read', key: keys.modulesPrefix, prefix: true }, // manifests and digests
    // The leader's key and its create revision (the epoch): what an agent checks fencing against.
    { permission: 'Read', key: `${ROOT}election/${ELECTION}/`, prefix: true },
  ];
}

export interface EtcdAccessPlan {
  /** Users for control-plane replicas: their certificates' CNs (`control` in a local fleet). */
  controlUsers: readonly string[];
  hosts: readonly string[];
  /**
   * The root user's password, set when root is created here (etcd needs a root user before
   * auth can be enabled); later changes of users and roles authenticate as root with it.
   */
  rootPassword: string;
}

/**
 * Creates the fleet's roles and users, gives every role exactly its grants, creates the root
 * user if missing, and enables auth. Idempotent: run again (as root once auth is on) it adds
 * what is missing and replaces a role's permissions with the current ones. `etcd` must be
 * allowed to manage users: any client before auth is enabled, root after.
 * Errors: INVALID_ARGUMENT for a name etcd would confuse with root or bpfleet cannot use,
 * and etcd's own errors (e.g. permission denied for a client that is not root).
 */
export async function setUpEtcdAccess(etcd: Etcd3, plan: EtcdAccessPlan): Promise<void> {
  for (const name of [...plan.controlUsers, ...plan.hosts]) checkName(name);
  if (!plan.rootPassword) throw new BpfleetError('INVALID_ARGUMENT', 'USAGE', 'rootPassword: etcd needs a root user with a password to enable auth');
  const users = new Set((await etcd.getUsers()).map((u) => u.name));
  const roles = new Set((await etcd.getRoles()).map((r) => r.name));
  await ensureRole(etcd, roles, CONTROL_ROLE, controlGrants());
  for (const user of plan.controlUsers) await ensureUser(etcd, users, user, CONTROL_ROLE);
  for (const host of plan.hosts) {
    await ensureRole(etcd, roles, hostRole(host), hostGrants(host));
    await ensureUser(etcd, users, host, hostRole(host));
  }
  if (!users.has(ETCD_ROOT)) {
    await etcd.user(ETCD_ROOT).create(plan.rootPassword);
    await etcd.user(ETCD_ROOT).addRole(ETCD_ROOT);
  }
  await etcd.auth.authEnable();
}

/** Adds one host's role and user to a fleet whose auth is on; `etcd` must be root. */
export async function grantHost(etcd: Etcd3, host: string): Promise<void> {
  const users = new Set((await etcd.getUsers()).map((u) => u.name));
  const roles = new Set((await etcd.getRoles()).map((r) => r.name));
  await ensureRole(etcd, roles, hostRole(host), hostGrants(host));
  await ensureUser(etcd, users, host, hostRole(host));
}

function checkName(name: string): void {
  if (!HOST_NAME_RE.test(name)) throw new BpfleetError('INVALID_ARGUMENT', 'USAGE', `etcd user "${name}": lowercase letters, digits and inner dashes, 1-63 characters`);
  // A certificate whose CN is "root" would be etcd's superuser.
  if (name === ETCD_ROOT) throw new BpfleetError('INVALID_ARGUMENT', 'USAGE', `etcd user "${name}" is etcd's superuser; a fleet identity must have another name`);
}

async function ensureRole(etcd: Etcd3, existing: Set<string>, name: string, grants: EtcdGrant[]): Promise<void> {
  const role = etcd.role(name);
  if (existing.has(name)) {
    const current = await role.permissions();
    if (current.length) await role.revoke(current.map((p) => ({ permission: p.permission, range: p.range })));
  } else {
    await role.create();
  }
  await role.grant(grants.map(toRequest));
}

async function ensureUser(etcd: Etcd3, existing: Set<string>, name: string, role: string): Promise<void> {
  // A password nobody knows: these users authenticate by certificate only (etcd 3.4 has no
  // password-less users; --no-password came in 3.5).
  if (!existing.has(name)) await etcd.user(name).create(randomBytes(32).toString('base64url'));
  await etcd.user(name).addRole(role);
}

function toRequest(g: EtcdGrant): IPermissionRequest {
  return g.prefix ? { permission: g.permission, range: Range.prefix(g.key) } : { permission: g.permission, key: g.key };
}
