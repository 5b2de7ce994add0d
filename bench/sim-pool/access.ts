/**
 * What the sim host pool (sim dataplane, scale benchmarks) may do in a secured etcd and NATS:
 * one pooled identity for all its hosts, since one etcd connection and one NATS connection
 * per simulated host would measure connection counts, not the control plane.
 *
 * The identity is a host-kind certificate named `pool` (e.g. `sim-pool`), and its hosts are
 * named `<namePrefix><i>`. It may do, for those hosts together, exactly what each host's own
 * identity may do for itself (control/access: hostGrants, hostNatsUser), and nothing for any
 * other host:
 * - etcd (user = the certificate's CN, role `bpfleet-sim-pool-<pool>`): readwrite the key
 *   prefixes `/bpfleet/hosts/<namePrefix>` and `/bpfleet/observed/<namePrefix>`, read
 *   `/bpfleet/intents/<namePrefix>`, the modules and the election. These are prefixes by
 *   design: every name that starts with the pool's prefix is the pool's, so the prefix must
 *   be one no real host's name starts with (`sim-` in every bench).
 * - NATS (user = the certificate's SPIFFE ID): publish each of its hosts' telemetry subjects
 *   (listed one by one: NATS wildcards match whole tokens, not a name's prefix) and read the
 *   object store; replies only under its own inbox prefix.
 */
import { randomBytes } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { Range } from 'etcd3';
import { spiffeIdFor } from '../../common/identity.js';
import { keys, subjects } from '../../common/keys.js';
import { objectReaderSubjects, type NatsUser } from '../../control/access/nats-access.js';
import type { EtcdGrant } from '../../control/access/etcd-access.js';

/** The pool's hosts' names: `<namePrefix>1` … `<namePrefix><hosts>`. */
export const poolHostNames = (namePrefix: string, hosts: number): string[] => Array.from({ length: hosts }, (_, i) => `${namePrefix}${i + 1}`);

/** The etcd permissions of a pool whose hosts' names start with `namePrefix`. */
export function simPoolEtcdGrants(namePrefix: string): EtcdGrant[] {
  if (!namePrefix) throw new RangeError('sim pool: an empty name prefix would grant every host\'s keys');
  return [
    { permission: 'Readwrite', key: keys.host(namePrefix), prefix: true },
    { permission: 'Readwrite', key: keys.observed(namePrefix), prefix: true },
    { permission: 'Read', key: `${keys.intentsPrefix}${namePrefix}`, prefix: true },
    { permission: 'Read', key: keys.modulesPrefix, prefix: true },
    { permission: 'Read', key: keys.electionPrefix, prefix: true },
  ];
}

/**
 * Creates (or re-grants) the pool's etcd role and user `pool` in a fleet whose auth is on;
 * `etcd` must be root. The user gets a random password nobody keeps: it authenticates by
 * certificate only.
 */
export async function grantSimPool(etcd: Etcd3, pool: string, namePrefix: string): Promise<void> {
  const roleName = `bpfleet-sim-pool-${pool}`;
  const role = etcd.role(roleName);
  if ((await etcd.getRoles()).some((r) => r.name === roleName)) {
    const current = await role.permissions();
    if (current.length) await role.revoke(current.map((p) => ({ permission: p.permission, range: p.range })));
  } else {
    await role.create();
  }
  await role.grant(simPoolEtcdGrants(namePrefix).map((g) => (g.prefix ? { permission: g.permission, range: Range.prefix(g.key) } : { permission: g.permission, key: g.key })));
  if (!(await etcd.getUsers()).some((u) => u.name === pool)) await etcd.user(pool).create(randomBytes(32).toString('base64url'));
  await etcd.user(pool).addRole(roleName);
}

/** The pool's NATS user: its hosts' telemetry subjects, object reads, replies on its own inbox prefix. */
export function simPoolNatsUser(trustDomain: string, pool: string, hostNames: readonly string[]): NatsUser {
  return {
    user: spiffeIdFor(trustDomain, 'host', pool),
    publish: [...hostNames.map((h) => subjects.telemetry(h)), ...objectReaderSubjects()],
    subscribe: [`${subjects.inboxPrefix(pool)}.>`],
  };
}
