import { formatAttachment, type HookName } from '../../../common/attachment.js';
import type { ProgramStats } from '../driver.js';
import { counterValue, type SimHostState, type SimLink, type SimProgram } from './host.js';

// Hooks in the order a packet meets them. A drop at an ingress hook keeps the packet out of
// the interface's rx counter and one at egress out of tx: the telemetry contract by which
// Δiface_rx / Δrun_count exposes a module that drops traffic.
const INGRESS: HookName[] = ['xdp', 'tcx-ingress'];
const EGRESS: HookName[] = ['tcx-egress'];

/**
 * Accounts for the traffic every interface saw from the host's clock up to `nowMs` at `pps`
 * packets per second each way. Call it before any change to what runs, so each stretch of
 * time is charged to the programs that ran during it.
 */
export function advanceTraffic(host: SimHostState, nowMs: number, pps: number): void {
  const from = host.clockMs ?? nowMs;
  host.clockMs = Math.max(from, nowMs);
  const offeredMilli = pps * (host.clockMs - from);
  for (const [iface, counters] of host.interfaces) {
    const before = Math.floor(counters.offeredMilli / 1000);
    counters.offeredMilli += offeredMilli;
    const arrived = Math.floor(counters.offeredMilli / 1000) - before;
    counters.rxPackets += passThrough(host, iface, INGRESS, arrived);
    counters.txPackets += passThrough(host, iface, EGRESS, arrived);
  }
}

function passThrough(host: SimHostState, iface: string, path: HookName[], packets: number): number {
  let survivors = packets;
  for (const hook of path) {
    const program = host.links.get(formatAttachment({ hook, iface }))?.program;
    if (program) survivors -= run(program, survivors);
  }
  return survivors;
}

/** Returns how many of `packets` the program dropped. */
function run(program: SimProgram, packets: number): number {
  program.runs += packets;
  // Drops derive from the running total, so rounding never loses or invents one however
  // finely the time is sliced.
  const drops = Math.floor(program.runs * program.behaviour.dropRate);
  const dropped = drops - program.drops;
  program.drops = drops;
  return dropped;
}

export function linkStats(host: SimHostState, link: SimLink): ProgramStats {
  const { program } = link;
  const iface = host.interfaces.get(link.attachment.iface);
  return {
    runCount: BigInt(program.runs),
    runTimeNs: BigInt(Math.round(program.runs * program.behaviour.runTimeNsPerPacket)),
    counters: Object.fromEntries(program.counterNames.map((name, i) => [name, BigInt(counterValue(program, i))])),
    ifaceRxPackets: BigInt(iface?.rxPackets ?? 0),
    ifaceTxPackets: BigInt(iface?.txPackets ?? 0),
    // The sim's rx counter already leaves out what ingress hooks dropped: it is what the
    // host's IP stack receives, the witness drop_rate is judged by.
    stackRxPackets: BigInt(iface?.rxPackets ?? 0),
  };
}
