/**
 * Which host registrations the control plane refuses to plan (issue 10, item 4).
 *
 * The key a registration sits under is the only name the control plane can trust: etcd
 * lets host `h` write `/bpfleet/hosts/h` and nothing else (docs/SECURITY.md), and the agent
 * checks `--host` against its certificate. The name inside the value is whatever the writer
 * put there. A registration whose name is not its key's is refused: planning it would send
 * intents meant for one host to the address another one wrote.
 */

/** Why a registration is left out of the fleet: stable words, shown by `bpfleet hosts` and counted by reason. */
export type RegistrationRefusal = 'NAME_MISMATCH' | 'DUPLICATE_NAME';

export const REGISTRATION_REFUSALS: readonly RegistrationRefusal[] = ['NAME_MISMATCH', 'DUPLICATE_NAME'];

/** A refused registration: `host` is the name its key holds, `claimed` the name its value gives. */
export interface RefusedRegistration {
  host: string;
  claimed: string;
  reason: RegistrationRefusal;
  message: string;
}

/**
 * Every refused registration among `claims` (key name → the name its value gives), in key
 * order. A registration is refused when its claimed name is not its key's: DUPLICATE_NAME
 * when that name is another registration's key name (`isRegistered`, which need not be
 * limited to `claims`) or claimed by another refused registration too, else NAME_MISMATCH.
 * The registration under the claimed name's own key is never refused for it, so a liar
 * cannot push the real host out of the fleet. Pure: the host directory passes what etcd holds.
 */
export function refusedRegistrations(claims: Iterable<readonly [string, string]>, isRegistered: (name: string) => boolean): RefusedRegistration[] {
  const mismatched = [...claims].filter(([host, claimed]) => host !== claimed).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const claimants = new Map<string, number>();
  for (const [, claimed] of mismatched) claimants.set(claimed, (claimants.get(claimed) ?? 0) + 1);
  return mismatched.map(([host, claimed]) => {
    const shown = JSON.stringify(claimed.slice(0, 64));
    return isRegistered(claimed) || claimants.get(claimed)! > 1
      ? { host, claimed, reason: 'DUPLICATE_NAME', message: `the registration under the key of ${host} claims ${shown}, a name another registration has` }
      : { host, claimed, reason: 'NAME_MISMATCH', message: `the registration under the key of ${host} claims ${shown}` };
  });
}
