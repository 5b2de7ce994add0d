/**
 * Reads what the kernel runs with bpftool, independently of bpfleet's own bookkeeping: a
 * test that asks the agent what it runs would only prove the agent agrees with itself.
 */
import type { LocalFleet } from '../../dev/fleet.js';
import { HOST_IFACE } from '../../dev/netns.js';
import { run } from '../../dev/processes.js';

async function bpftool<T>(args: string[], netns?: string): Promise<T> {
  const { stdout } = await run('bpftool', ['-j', ...args], { netns });
  return JSON.parse(stdout || 'null') as T;
}

export interface KernelProg {
  id: number;
  name: string;
  tag: string;
  map_ids?: number[];
}

export interface KernelLink {
  id: number;
  prog_id: number;
  type: string;
  ifindex?: number;
}

/** The XDP program attached to `iface` inside `netns`, or null. */
export async function xdpProgId(netns: string, iface: string): Promise<number | null> {
  const out = await bpftool<{ xdp?: { devname: string; id: number }[] }[]>(['net', 'show', 'dev', iface], netns);
  return out?.[0]?.xdp?.find((x) => x.devname === iface)?.id ?? null;
}

/** The XDP program on a fleet host's eth0, as the kernel reports it; throws if none. */
export async function hostXdpProgId(fleet: LocalFleet, host: string): Promise<number> {
  const id = await xdpProgId(fleet.host(host).netns.netns, HOST_IFACE);
  if (!id) throw new Error(`${host}: no XDP program attached to ${HOST_IFACE}`);
  return id;
}

export function progs(): Promise<KernelProg[]> {
  return bpftool<KernelProg[]>(['prog', 'show']);
}

export async function prog(id: number): Promise<KernelProg> {
  return bpftool<KernelProg>(['prog', 'show', 'id', String(id)]);
}

export async function linkOfProg(progId: number): Promise<KernelLink | null> {
  const links = await bpftool<KernelLink[]>(['link', 'show']);
  return links.find((l) => l.prog_id === progId) ?? null;
}

/**
 * Slot values of a program's `bpfleet_counters` per-CPU array, summed over CPUs, read from
 * the map the running program references.
 */
export async function counters(progId: number): Promise<bigint[]> {
  const p = await prog(progId);
  for (const mapId of p.map_ids ?? []) {
    const info = await bpftool<{ name: string }>(['map', 'show', 'id', String(mapId)]);
    // The kernel keeps 15 characters of a map name.
    if (info.name !== 'bpfleet_counters'.slice(0, 15)) continue;
    const dump = await bpftool<{ key: number | string[]; values: { cpu: number; value: number | string | string[] }[] }[]>(['map', 'dump', 'id', String(mapId)]);
    return dump.sort((a, b) => Number(asBigInt(a.key)) - Number(asBigInt(b.key)))
      .map((e) => e.values.reduce((s, v) => s + asBigInt(v.value), 0n));
  }
  throw new Error(`program ${progId} has no bpfleet_counters map`);
}

/** The id of the map called `name` (15 characters kept, as the kernel does) that program `progId` uses; null if none. */
export async function progMapId(progId: number, name: string): Promise<number | null> {
  for (const mapId of (await prog(progId)).map_ids ?? []) {
    const info = await bpftool<{ name: string }>(['map', 'show', 'id', String(mapId)]);
    if (info.name === name.slice(0, 15)) return mapId;
  }
  return null;
}

/** The values of an array map of u64, by index, as `bpftool map dump` shows them. */
export async function arrayMapValues(mapId: number): Promise<bigint[]> {
  const dump = await bpftool<{ key: number | string[]; value: number | string | string[] }[]>(['map', 'dump', 'id', String(mapId)]);
  return dump.sort((a, b) => Number(asBigInt(a.key)) - Number(asBigInt(b.key))).map((e) => asBigInt(e.value));
}

/**
 * IPv4 packets the network stack of `netns` received (Ip: InReceives): counted after XDP,
 * so packets an XDP program dropped are not in it (unlike the veth's rx_packets).
 */
export async function ipInReceives(netns: string): Promise<number> {
  const { stdout } = await run('cat', ['/proc/net/snmp'], { netns });
  const [header, values] = stdout.split('\n').filter((l) => l.startsWith('Ip:'));
  const i = header!.split(/\s+/).indexOf('InReceives');
  return Number(values!.split(/\s+/)[i]);
}

/** bpftool prints values as numbers with BTF, as little-endian hex byte arrays without. */
function asBigInt(v: number | string | string[]): bigint {
  if (!Array.isArray(v)) return BigInt(v);
  return v.reduceRight((acc, byte) => (acc << 8n) | BigInt(byte), 0n);
}
