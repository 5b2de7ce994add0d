/**
 * The numbers behind ProgramStats: the kernel's run statistics and the module's own
 * counters (read through the program's maps), and the network namespace's packet counts
 * from /proc, which no module can fake.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { ProgramStats } from '../driver.js';
import * as bpf from './libbpf.js';
import type { NetnsSwitch } from './netns.js';

/** The per-CPU array of u64 a module counts in; its slot names are in the module card. */
const COUNTERS_MAP = 'bpfleet_counters';

// Run-time stats cost a little on every program run, so the kernel keeps them off unless
// asked. The fd from bpf_enable_stats keeps them on exactly as long as this process lives;
// it is never closed on purpose.
let runTimeStatsFd: number | null = null;
let runTimeStatsViaSysctl = false;

/**
 * Turns on run_cnt / run_time_ns accounting for this process's lifetime (once; later calls
 * do nothing). Falls back to the kernel.bpf_stats_enabled sysctl, and then to a warning:
 * run counts read 0, nothing fails.
 */
export function enableRunTimeStats(): void {
  if (runTimeStatsFd !== null || runTimeStatsViaSysctl) return;
  try {
    runTimeStatsFd = bpf.enableRunTimeStats();
    return;
  } catch (err) {
    try {
      writeFileSync('/proc/sys/kernel/bpf_stats_enabled', '1');
      runTimeStatsViaSysctl = true;
      process.emitWarning(`bpf_enable_stats failed (${(err as Error).message}); set kernel.bpf_stats_enabled=1 instead, ` +
        'which stays on for the whole host after this agent exits');
    } catch (sysctlErr) {
      process.emitWarning(`BPF run-time stats are off, run counts will read 0: bpf_enable_stats failed (${(err as Error).message}) ` +
        `and so did kernel.bpf_stats_enabled=1 (${(sysctlErr as Error).message})`);
    }
  }
}

/**
 * Run count and time (ns) of program `progId`, and its `bpfleet_counters` summed over CPUs,
 * by slot name (`counterNames[i]` names slot i; slots past the map's size are left out).
 * Throws a libbpf SysError when the program is gone.
 */
export function programStats(progId: number, counterNames: string[]): Pick<ProgramStats, 'runCount' | 'runTimeNs' | 'counters'> {
  const info = bpf.withFd(bpf.progFdById(progId), bpf.progInfo);
  return { runCount: info.runCount, runTimeNs: info.runTimeNs, counters: readCounters(info.mapIds, counterNames) };
}

function readCounters(mapIds: number[], names: string[]): Record<string, bigint> {
  const counters: Record<string, bigint> = {};
  for (const id of mapIds) {
    const fd = bpf.mapFdById(id);
    try {
      const info = bpf.mapInfo(fd);
      // The kernel keeps 15 characters of a map name.
      if (info.type !== bpf.BPF_MAP_TYPE_PERCPU_ARRAY || info.name !== COUNTERS_MAP.slice(0, 15)) continue;
      names.slice(0, info.maxEntries).forEach((name, slot) => {
        counters[name] = bpf.lookupPerCpuU64(fd, slot).reduce((a, v) => a + v, 0n);
      });
      return counters;
    } finally {
      bpf.closeFd(fd);
    }
  }
  return counters;
}

/**
 * Packets of `iface` (from /proc/net/dev; absent when there is no such interface) and those
 * the IPv4 and IPv6 layers received (InReceives), in `netns` or the calling thread's own.
 */
export function netCounters(iface: string, netns: NetnsSwitch | null): Pick<ProgramStats, 'ifaceRxPackets' | 'ifaceTxPackets' | 'stackRxPackets'> {
  // /proc/thread-self, not /proc/self: the netns switch moved this thread only.
  const read = () => ['dev', 'snmp', 'snmp6'].map((f) => readProc(`/proc/thread-self/net/${f}`));
  const [dev, snmp, snmp6] = netns ? netns.run(read) : read();
  return { ...devCounters(dev ?? '', iface), stackRxPackets: ipInReceives(snmp ?? '') + ip6InReceives(snmp6 ?? '') };
}

/** Null when the file does not exist (snmp6 without IPv6). */
function readProc(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** rx and tx packets of `iface` in the text of /proc/net/dev; {} when it is not listed. */
export function devCounters(dev: string, iface: string): Pick<ProgramStats, 'ifaceRxPackets' | 'ifaceTxPackets'> {
  for (const line of dev.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0 || line.slice(0, colon).trim() !== iface) continue;
    const fields = line.slice(colon + 1).trim().split(/\s+/);
    // rx: bytes packets errs drop fifo frame compressed multicast; then tx: bytes packets ...
    return { ifaceRxPackets: BigInt(fields[1] ?? 0), ifaceTxPackets: BigInt(fields[9] ?? 0) };
  }
  return {};
}

/** Ip InReceives in the text of /proc/net/snmp: an "Ip:" line of names, then one of values; 0 if absent. */
export function ipInReceives(snmp: string): bigint {
  const [names, values] = snmp.split('\n').filter((l) => l.startsWith('Ip:')).map((l) => l.split(/\s+/));
  const i = names?.indexOf('InReceives') ?? -1;
  return i < 0 ? 0n : BigInt(values?.[i] ?? 0);
}

/** Ip6InReceives in the text of /proc/net/snmp6 (one "Name value" per line); 0 if absent. */
export function ip6InReceives(snmp6: string): bigint {
  const line = snmp6.split('\n').find((l) => l.startsWith('Ip6InReceives'));
  return BigInt(line?.trim().split(/\s+/)[1] ?? 0);
}
