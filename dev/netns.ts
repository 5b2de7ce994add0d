/**
 * A "host" of the local fleet: a network namespace with a veth pair. `eth0` inside the namespace
 * plays the host's NIC (the agent attaches there); its peer stays in the root namespace, where
 * traffic sources send from. Optionally a second veth pair, `mgmt0`, plays the host's
 * management NIC: the agent reaches etcd, NATS and the control plane through it, so a module
 * that drops everything on eth0 does not cut the host off from the fleet.
 *
 * Addresses: host index i (0..511) gets 198.18.0.0/15 split into /24s,
 * 198.<18 + i/256>.<i%256>.0/24, itself split in two /25s: the data link .0/25 (.1 on the
 * root-side peer, .2 on eth0) and the management link .128/25 (.129 root side, .130 on mgmt0).
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { BlockList, isIPv4 } from 'node:net';
import { join } from 'node:path';
import { claim, ClaimConflictError, isAlive, liveClaim, readClaims, release } from './claims.js';
import { onExit } from './cleanup.js';
import { BPFFS, PIN_ROOT_PREFIX } from './pins.js';
import { CommandError, run, runSyncQuiet } from './processes.js';

export const NETNS_PREFIX = 'bpfleet-';
export const PEER_PREFIX = 'bf';
export const HOST_IFACE = 'eth0';
export const MGMT_PEER_PREFIX = 'bm';
export const MGMT_IFACE = 'mgmt0';
export const MAX_HOST_INDEX = 511;
// The unit claimed per host index; each link gets half of it.
const PREFIX_LEN = 24;
const LINK_PREFIX_LEN = 25;
const SERVICES_NET = { addr: '198.18.0.0', len: 15 } as const;
// Marks root-side veths as ours and names their namespace, for sweepStale().
const ALIAS_PREFIX = 'bpfleet:';
const NAME_RE = /^[a-z0-9][a-z0-9-]{0,39}$/;
const IFNAMSIZ = 15;

export interface HostNetns {
  name: string;
  index: number;
  /** bpfleet-<name> */
  netns: string;
  /** /run/netns/bpfleet-<name>, for nsenter --net= and setns(). */
  nsPath: string;
  iface: typeof HOST_IFACE;
  /** Address of eth0 inside the namespace: the traffic target. */
  hostAddr: string;
  /** Address of the root-side peer; processes in the namespace reach the root namespace here. */
  peerAddr: string;
  peerIface: string;
  prefixLen: number;
  /** The management link, when the host was created with one. */
  management: ManagementLink | null;
  /** Deletes the veth pair(s) and the namespace and checks that all are gone. Idempotent. */
  destroy(): Promise<void>;
}

export interface ManagementLink {
  iface: typeof MGMT_IFACE;
  /** Address of mgmt0 inside the namespace: what the host's daemons listen on and dial from. */
  hostAddr: string;
  /** Address of the root-side peer: the namespace's gateway to `routes`. */
  peerAddr: string;
  peerIface: string;
  prefixLen: number;
  /** Destinations (IPv4 /32s) the namespace reaches through mgmt0. */
  routes: readonly string[];
}

export interface HostNetnsOptions {
  /** Adds mgmt0 with a route to each of these addresses (IPv4, inside 198.18.0.0/15). */
  management?: { routes: readonly string[] };
}

export function hostSubnet(index: number): { hostAddr: string; peerAddr: string; prefixLen: number } {
  if (!Number.isInteger(index) || index < 0 || index > MAX_HOST_INDEX) {
    throw new Error(`host index ${index}: must be an integer in 0..${MAX_HOST_INDEX}`);
  }
  const net = `198.${18 + (index >> 8)}.${index & 255}`;
  return { hostAddr: `${net}.2`, peerAddr: `${net}.1`, prefixLen: LINK_PREFIX_LEN };
}

/** The management link's addresses for host index `index`: the upper half of its /24. */
export function managementSubnet(index: number): { hostAddr: string; peerAddr: string; prefixLen: number } {
  const net = hostSubnet(index).peerAddr.replace(/\.1$/, '');
  return { hostAddr: `${net}.130`, peerAddr: `${net}.129`, prefixLen: LINK_PREFIX_LEN };
}

function ifaceName(prefix: string, name: string): string {
  const plain = `${prefix}${name}`;
  if (plain.length <= IFNAMSIZ) return plain;
  return `${prefix}${name.slice(0, 6)}-${createHash('sha1').update(name).digest('hex').slice(0, 6)}`;
}

/** bf<name>, or when that exceeds IFNAMSIZ, bf<start of name>-<hash of name>. */
export function peerIfaceName(name: string): string {
  return ifaceName(PEER_PREFIX, name);
}

/** bm<name>, shortened like peerIfaceName(). */
export function managementPeerIfaceName(name: string): string {
  return ifaceName(MGMT_PEER_PREFIX, name);
}

const servicesNet = new BlockList();
servicesNet.addSubnet(SERVICES_NET.addr, SERVICES_NET.len, 'ipv4');

function checkRoutes(routes: readonly string[]): void {
  for (const r of routes) {
    if (!isIPv4(r) || !servicesNet.check(r, 'ipv4')) {
      throw new Error(`management route "${r}": must be an IPv4 address in ${SERVICES_NET.addr}/${SERVICES_NET.len}`);
    }
  }
}

const ip = (...args: string[]): Promise<{ stdout: string }> => run('ip', args);

const GONE_RE = /Cannot find device|does not exist|No such file/;

async function ignoreGone(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (!(err instanceof CommandError && GONE_RE.test(err.stderr))) throw err;
  }
}

async function removeNetns(netns: string, ...peerIfaces: string[]): Promise<void> {
  // Deleting one end of a veth deletes both, even when a process still holds the namespace open.
  for (const peerIface of peerIfaces) await ignoreGone(ip('link', 'del', 'dev', peerIface));
  await ignoreGone(ip('netns', 'del', netns));
}

/** Names of all named network namespaces (ip netns list). */
export async function listNetns(): Promise<string[]> {
  const { stdout } = await ip('-j', 'netns', 'list');
  return stdout.trim() ? (JSON.parse(stdout) as { name: string }[]).map((n) => n.name) : [];
}

async function linkExists(ifname: string): Promise<boolean> {
  try {
    await ip('link', 'show', 'dev', ifname);
    return true;
  } catch (err) {
    if (err instanceof CommandError && GONE_RE.test(err.stderr)) return false;
    throw err;
  }
}

async function macOf(ifname: string, netns?: string): Promise<string> {
  const { stdout } = await ip(...(netns ? ['-n', netns] : []), '-j', 'link', 'show', 'dev', ifname);
  const mac = (JSON.parse(stdout) as { address?: string }[])[0]?.address;
  if (!mac) throw new Error(`no MAC address on ${ifname}`);
  return mac;
}

function subnetOf(index: number): string {
  return `${hostSubnet(index).peerAddr.replace(/\.1$/, '.0')}/${PREFIX_LEN}`;
}

/** Root-side veths a dead run left: ifname → the namespace named in their alias. */
async function staleLinks(): Promise<Map<string, string>> {
  const { stdout } = await ip('-j', 'link', 'show', 'type', 'veth');
  const stale = new Map<string, string>();
  for (const link of JSON.parse(stdout || '[]') as { ifname: string; ifalias?: string }[]) {
    if (!link.ifalias?.startsWith(ALIAS_PREFIX)) continue;
    const netns = link.ifalias.slice(ALIAS_PREFIX.length);
    if (!liveClaim('netns', netns)) stale.set(link.ifname, netns);
  }
  return stale;
}

/**
 * Makes `subnet` free in the root namespace: removes a dead run's veths (and namespaces) that
 * hold it, and returns the interfaces that hold it and are not ours to remove.
 */
async function clearSubnet(subnet: string): Promise<string[]> {
  const { stdout } = await ip('-j', 'addr', 'show', 'to', subnet);
  const users = (JSON.parse(stdout || '[]') as { ifname: string }[]).map((l) => l.ifname);
  if (users.length === 0) return [];
  const stale = await staleLinks();
  for (const u of users) {
    const netns = stale.get(u);
    if (netns !== undefined) await removeNetns(netns, u);
  }
  return users.filter((u) => !stale.has(u));
}

/** Claims `index` and clears its subnet; with no index, the lowest index that can be had. */
async function takeSubnet(index: number | undefined): Promise<number> {
  const candidates = index === undefined ? Array.from({ length: MAX_HOST_INDEX + 1 }, (_, i) => i) : [index];
  for (const i of candidates) {
    const subnet = subnetOf(i);
    try {
      claim('subnet', String(i));
    } catch (err) {
      if (err instanceof ClaimConflictError && index === undefined) continue;
      throw err;
    }
    const foreign = await clearSubnet(subnet).catch((err: unknown) => {
      release('subnet', String(i));
      throw err;
    });
    if (foreign.length === 0) return i;
    release('subnet', String(i));
    if (index !== undefined) throw new Error(`subnet ${subnet} of host index ${i} is already on ${foreign.join(', ')}`);
  }
  throw new Error(`none of the ${MAX_HOST_INDEX + 1} host subnets is free`);
}

/**
 * Creates host `name` with subnet `index` (default: the lowest free one), and with
 * `opts.management` its management link. Throws when a live process already has the name or
 * the index, or when a route is outside 198.18.0.0/15.
 */
export async function createHostNetns(name: string, index?: number, opts: HostNetnsOptions = {}): Promise<HostNetns> {
  if (!NAME_RE.test(name)) throw new Error(`host "${name}": use 1-40 lowercase letters, digits and dashes`);
  if (index !== undefined) hostSubnet(index);
  if (opts.management) checkRoutes(opts.management.routes);
  const netns = `${NETNS_PREFIX}${name}`;
  const peerIface = peerIfaceName(name);
  const mgmtPeerIface = managementPeerIfaceName(name);
  const peerIfaces = opts.management ? [peerIface, mgmtPeerIface] : [peerIface];
  claim('netns', netns);
  let i: number;
  try {
    i = await takeSubnet(index);
  } catch (err) {
    release('netns', netns);
    throw err;
  }
  const { hostAddr, peerAddr, prefixLen } = hostSubnet(i);
  const releaseClaims = (): void => {
    release('subnet', String(i));
    release('netns', netns);
  };
  const unregister = onExit(`delete netns ${netns}`, () => {
    for (const p of peerIfaces) runSyncQuiet('ip', ['link', 'del', 'dev', p]);
    runSyncQuiet('ip', ['netns', 'del', netns]);
    releaseClaims();
  });
  const destroy = async (): Promise<void> => {
    await removeNetns(netns, ...peerIfaces);
    if ((await listNetns()).includes(netns)) throw new Error(`netns ${netns} still exists after delete`);
    for (const p of peerIfaces) if (await linkExists(p)) throw new Error(`link ${p} still exists after delete`);
    unregister();
    releaseClaims();
  };
  let management: ManagementLink | null = null;

  try {
    // Our claim on the name is fresh, so whatever still carries it is a dead run's.
    await removeNetns(netns, peerIface, mgmtPeerIface);
    await ip('netns', 'add', netns);
    await ip('link', 'add', peerIface, 'type', 'veth', 'peer', 'name', HOST_IFACE, 'netns', netns);
    await ip('link', 'set', 'dev', peerIface, 'alias', `${ALIAS_PREFIX}${netns}`);
    if (existsSync('/proc/sys/net/ipv6')) {
      // No link-local addresses, hence no IPv6 ND/MLD chatter: packet counters on these links
      // then count only the traffic a test sends.
      await ip('link', 'set', 'dev', peerIface, 'addrgenmode', 'none');
      await ip('-n', netns, 'link', 'set', 'dev', HOST_IFACE, 'addrgenmode', 'none');
    }
    await ip('addr', 'add', `${peerAddr}/${prefixLen}`, 'dev', peerIface);
    await ip('-n', netns, 'addr', 'add', `${hostAddr}/${prefixLen}`, 'dev', HOST_IFACE);
    await ip('-n', netns, 'link', 'set', 'dev', 'lo', 'up');
    await ip('-n', netns, 'link', 'set', 'dev', HOST_IFACE, 'up');
    await ip('link', 'set', 'dev', peerIface, 'up');
    // Static neighbours: a module that drops everything also drops ARP, and traffic must still
    // reach the hook (to be counted and dropped there) instead of dying in neighbour resolution.
    const [hostMac, peerMac] = await Promise.all([macOf(HOST_IFACE, netns), macOf(peerIface)]);
    await ip('neigh', 'replace', hostAddr, 'lladdr', hostMac, 'dev', peerIface, 'nud', 'permanent');
    await ip('-n', netns, 'neigh', 'replace', peerAddr, 'lladdr', peerMac, 'dev', HOST_IFACE, 'nud', 'permanent');
    if (opts.management) management = await addManagementLink(netns, i, mgmtPeerIface, opts.management.routes);
  } catch (err) {
    await destroy().catch(() => {});
    throw err;
  }

  return { name, index: i, netns, nsPath: `/run/netns/${netns}`, iface: HOST_IFACE, hostAddr, peerAddr, peerIface, prefixLen, management, destroy };
}

/**
 * mgmt0 in `netns`, its peer `peerIface` in the root namespace, and a /32 route via that
 * peer to each of `routes`. No forwarding anywhere: the routes lead to addresses of the root
 * namespace itself, which delivers locally and answers over the same link.
 */
async function addManagementLink(netns: string, index: number, peerIface: string, routes: readonly string[]): Promise<ManagementLink> {
  const { hostAddr, peerAddr, prefixLen } = managementSubnet(index);
  await ip('link', 'add', peerIface, 'type', 'veth', 'peer', 'name', MGMT_IFACE, 'netns', netns);
  await ip('link', 'set', 'dev', peerIface, 'alias', `${ALIAS_PREFIX}${netns}`);
  if (existsSync('/proc/sys/net/ipv6')) {
    await ip('link', 'set', 'dev', peerIface, 'addrgenmode', 'none');
    await ip('-n', netns, 'link', 'set', 'dev', MGMT_IFACE, 'addrgenmode', 'none');
  }
  await ip('addr', 'add', `${peerAddr}/${prefixLen}`, 'dev', peerIface);
  await ip('-n', netns, 'addr', 'add', `${hostAddr}/${prefixLen}`, 'dev', MGMT_IFACE);
  await ip('-n', netns, 'link', 'set', 'dev', MGMT_IFACE, 'up');
  await ip('link', 'set', 'dev', peerIface, 'up');
  for (const r of routes) await ip('-n', netns, 'route', 'replace', `${r}/32`, 'via', peerAddr, 'dev', MGMT_IFACE);
  return { iface: MGMT_IFACE, hostAddr, peerAddr, peerIface, prefixLen, routes: [...routes] };
}

export interface SweepReport {
  processes: number[];
  links: string[];
  netns: string[];
  pins: string[];
  dirs: string[];
}

/**
 * Removes what crashed runs left behind: their child processes (whole process groups), temp
 * dirs, root-side veths, bpfleet-* namespaces and /sys/fs/bpf/bpfleet-* pin roots. Anything a
 * live process (this one included) has claimed is left alone, so running tests in parallel
 * is safe.
 */
export async function sweepStale(): Promise<SweepReport> {
  const report: SweepReport = { processes: [], links: [], netns: [], pins: [], dirs: [] };

  for (const c of readClaims()) {
    if (isAlive(c.owner)) continue;
    if (c.kind === 'proc' && c.target && isAlive(c.target)) {
      try {
        process.kill(-c.target.pid, 'SIGKILL');
        report.processes.push(c.target.pid);
      } catch {
        // exited meanwhile
      }
    }
    if (c.kind === 'dir' && existsSync(c.id)) {
      rmSync(c.id, { recursive: true, force: true });
      report.dirs.push(c.id);
    }
    release(c.kind, c.id);
  }

  for (const ifname of (await staleLinks()).keys()) {
    await ignoreGone(ip('link', 'del', 'dev', ifname));
    report.links.push(ifname);
  }

  for (const netns of await listNetns()) {
    if (!netns.startsWith(NETNS_PREFIX) || liveClaim('netns', netns)) continue;
    await ignoreGone(ip('netns', 'del', netns));
    report.netns.push(netns);
  }

  if (existsSync(BPFFS)) {
    for (const entry of readdirSync(BPFFS)) {
      if (!entry.startsWith(PIN_ROOT_PREFIX) || liveClaim('pin', entry)) continue;
      rmSync(join(BPFFS, entry), { recursive: true, force: true });
      report.pins.push(entry);
    }
  }
  return report;
}
