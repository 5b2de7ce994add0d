/**
 * Swap gap under load: does any packet get past an XDP firewall while its program is being
 * replaced? Two versions of the firewall (agent/bpf/firewall-v1/-v2, both dropping UDP to
 * one port) sit on eth0 of a namespace while a sender floods that port from the root
 * namespace as fast as it can. The programs are swapped SWAPS times by bpf_link_update with
 * BPF_F_REPLACE (how bpfleet upgrades), then SWAPS times by detaching the link and creating
 * a new one (the naive way). Both are driven straight through libbpf with both programs
 * loaded beforehand, so only the swap itself is measured. Packets that got through are
 * counted inside the namespace by a UDP socket bound on the blocked port and by the stack's
 * own counter (Ip InReceives), never by the programs.
 *
 * Writes bench/results/swap.json. Run: npx tsx bench/swap.ts (root; BPFLEET_BENCH_SWAPS
 * overrides the swap count).
 */
import { setImmediate as yieldToLoop, setTimeout as sleep } from 'node:timers/promises';
import type { ModuleArtifact } from '../agent/dataplane/driver.js';
import * as bpf from '../agent/dataplane/kernel/libbpf.js';
import { NetnsSwitch } from '../agent/dataplane/kernel/netns.js';
import { CleanupStack } from '../dev/cleanup.js';
import type { HostNetns } from '../dev/netns.js';
import { missingPrereqs } from '../dev/prereqs.js';
import { startBlaster, type Blaster } from '../dev/traffic.js';
import { ipInReceives } from '../e2e/support/bpftool.js';
import { buildModules, createSandbox } from '../e2e/support/kernel-sandbox.js';
import { BLOCKED_UDP_PORT, firewallModule, programFor } from './dataplane/firewall.js';
import { startUdpReceiver } from './dataplane/receiver.js';
import { distribution, machine, writeResult, type Distribution } from './dataplane/report.js';

const SWAPS = Number(process.env.BPFLEET_BENCH_SWAPS ?? 1000);
// The sender runs this long at most; each phase stops it as soon as its swaps are done.
const MAX_BLAST_MS = 10 * 60_000;
// Traffic flows this long before the first swap, and after the last one before it stops.
const STEADY_MS = 500;
// After the sender stops: time for the last packets to reach the socket.
const DRAIN_MS = 300;
const WITNESS_CHECK_MS = 1_000;

/** One firewall version, loaded and ready to attach. */
interface LoadedFirewall {
  version: string;
  obj: bpf.BpfObject;
  progFd: number;
  countersFd: number;
}

async function loadFirewall(module: ModuleArtifact): Promise<LoadedFirewall> {
  const name = programFor(module, 'xdp');
  const obj = bpf.BpfObject.open(module.object, module.manifest.name);
  try {
    for (const p of obj.programs()) if (p.name !== name) p.setAutoload(false);
    await obj.load();
    return { version: module.manifest.version, obj, progFd: obj.program(name)!.fd, countersFd: obj.map('bpfleet_counters')!.fd };
  } catch (err) {
    obj.close();
    throw err;
  }
}

/** Packets both firewall versions dropped so far (slot 0 of each one's counters). */
function droppedSoFar(firewalls: LoadedFirewall[]): bigint {
  return firewalls.reduce((sum, f) => sum + bpf.lookupPerCpuU64(f.countersFd, 0).reduce((a, v) => a + v, 0n), 0n);
}

interface Blasted {
  /** Datagrams the sender handed to the kernel. */
  sent: number;
  pps: number;
  /** Datagrams the socket on the blocked port received. */
  socketReceived: number;
  /** IPv4 packets the namespace's stack received (Ip InReceives). */
  stackReceived: number;
  seconds: number;
}

/** Runs `work` while the blocked port is flooded, and counts what reaches the namespace. */
async function underBlast(host: HostNetns, work: () => Promise<void>): Promise<Blasted> {
  const receiver = await startUdpReceiver(host.netns, host.hostAddr, BLOCKED_UDP_PORT);
  let blaster: Blaster | undefined;
  try {
    const stackBefore = await ipInReceives(host.netns);
    const t0 = performance.now();
    blaster = startBlaster({ target: host.hostAddr, port: BLOCKED_UDP_PORT, durationMs: MAX_BLAST_MS });
    let blasting = true;
    void blaster.done.then(() => (blasting = false), () => (blasting = false));
    await sleep(STEADY_MS);
    await work();
    await sleep(STEADY_MS);
    if (!blasting) throw new Error(`the sender stopped before the work was done (after ${MAX_BLAST_MS} ms)`);
    const blast = await blaster.stop();
    const seconds = (performance.now() - t0) / 1000;
    await sleep(DRAIN_MS);
    const socketReceived = await receiver.stop();
    const stackReceived = (await ipInReceives(host.netns)) - stackBefore;
    return { sent: blast.sent, pps: blast.pps, socketReceived, stackReceived, seconds: Math.round(seconds * 10) / 10 };
  } catch (err) {
    await blaster?.stop().catch(() => undefined);
    await receiver.stop().catch(() => undefined);
    throw err;
  }
}

interface PhaseResult extends Blasted {
  swaps: number;
  /** Packets that got past the firewall: what the namespace's stack received. */
  leaked: number;
  leakedPerSwap: number;
  /** Packets the firewall programs dropped, by their own count. */
  dropped: number;
  /** Sent but neither dropped by a firewall nor received: lost on the way (veth queues). */
  unaccounted: number;
  swapMs: Distribution;
}

/** Swaps `swaps` times under load with `swap(from, to)`, alternating the two versions. */
async function phase(host: HostNetns, firewalls: [LoadedFirewall, LoadedFirewall], swaps: number,
  swap: (from: LoadedFirewall, to: LoadedFirewall) => void): Promise<PhaseResult> {
  const times: number[] = [];
  const droppedBefore = droppedSoFar(firewalls);
  const blasted = await underBlast(host, async () => {
    for (let i = 0; i < swaps; i++) {
      const [from, to] = i % 2 === 0 ? firewalls : [firewalls[1], firewalls[0]];
      const t = performance.now();
      swap(from, to);
      times.push(performance.now() - t);
      // Lets the child processes' output be read; the swap itself is synchronous.
      if (i % 50 === 49) await yieldToLoop();
    }
  });
  const leaked = blasted.stackReceived;
  const dropped = Number(droppedSoFar(firewalls) - droppedBefore);
  return {
    swaps, leaked, leakedPerSwap: Math.round((leaked / swaps) * 10) / 10, ...blasted,
    dropped, unaccounted: blasted.sent - dropped - leaked, swapMs: distribution(times),
  };
}

async function main(): Promise<void> {
  if (!(Number.isInteger(SWAPS) && SWAPS >= 2 && SWAPS % 2 === 0)) throw new Error(`BPFLEET_BENCH_SWAPS=${SWAPS}: an even number ≥ 2`);
  const missing = await missingPrereqs(['root', 'bpf', 'bpffs', 'netns', 'nsenter', 'clang', 'python3']);
  if (missing.length) throw new Error(`swap bench cannot run:\n${missing.join('\n')}`);
  buildModules();
  const started = new Date().toISOString();
  const machineInfo = machine();

  const cleanup = new CleanupStack();
  try {
    const sandbox = await createSandbox();
    cleanup.defer(() => sandbox.destroy(), 'destroy sandbox');
    const { host } = sandbox;
    const netns = NetnsSwitch.open(host.netns);
    cleanup.defer(() => netns.close(), 'close netns handle');
    const ifindex = netns.run(() => bpf.ifNameToIndex(host.iface));

    const v1 = await loadFirewall(firewallModule('v1'));
    cleanup.defer(() => v1.obj.close(), 'close firewall v1');
    const v2 = await loadFirewall(firewallModule('v2'));
    cleanup.defer(() => v2.obj.close(), 'close firewall v2');
    const firewalls: [LoadedFirewall, LoadedFirewall] = [v1, v2];

    process.stderr.write(`swap bench: ${host.netns} ${host.iface} ${host.hostAddr}, UDP port ${BLOCKED_UDP_PORT} blocked, ${SWAPS} swaps each way\n`);

    // The witness must see packets when nothing is attached, or "0 leaked" would prove nothing.
    const open = await underBlast(host, () => sleep(WITNESS_CHECK_MS));
    if (open.socketReceived === 0 || open.stackReceived === 0) {
      throw new Error(`with no firewall attached the namespace received nothing (socket ${open.socketReceived}, stack ${open.stackReceived}): the leak counters cannot be trusted`);
    }
    process.stderr.write(`no firewall: sent ${open.sent} at ${open.pps} pps, socket received ${open.socketReceived}, stack ${open.stackReceived}\n`);

    // The link is the only reference to the attachment: closing its fd detaches.
    let linkFd = netns.run(() => bpf.linkCreate(v1.progFd, ifindex, bpf.BPF_XDP));
    cleanup.defer(() => bpf.closeFd(linkFd), 'close link');

    const atomic = await phase(host, firewalls, SWAPS, (from, to) => bpf.linkUpdate(linkFd, to.progFd, from.progFd));
    process.stderr.write(`atomic: ${atomic.swaps} swaps, ${atomic.leaked} leaked, swap p50 ${atomic.swapMs.p50_ms} ms, ${atomic.pps} pps\n`);
    requireRunning(linkFd, v1, 'after the atomic swaps');

    const naive = await phase(host, firewalls, SWAPS, (_from, to) => {
      bpf.linkDetach(linkFd);
      bpf.closeFd(linkFd);
      linkFd = netns.run(() => bpf.linkCreate(to.progFd, ifindex, bpf.BPF_XDP));
    });
    process.stderr.write(`naive: ${naive.swaps} swaps, ${naive.leaked} leaked, swap p50 ${naive.swapMs.p50_ms} ms, ${naive.pps} pps\n`);
    requireRunning(linkFd, v1, 'after the naive swaps');

    const path = writeResult('swap', {
      bench: 'swap',
      started,
      machine: machineInfo,
      hook: 'xdp',
      interface: 'veth (native XDP), inside a namespace',
      blockedPort: BLOCKED_UDP_PORT,
      versions: firewalls.map((f) => f.version),
      pps: Math.round((atomic.pps + naive.pps) / 2),
      noFirewall: open,
      atomic: { method: 'bpf_link_update with BPF_F_REPLACE and the expected old program', ...atomic },
      naive: { method: 'bpf_link_detach + close, then bpf_link_create', ...naive },
    });
    process.stderr.write(`wrote ${path}\n`);
    if (atomic.leaked > 0) {
      process.stderr.write(`FAIL: ${atomic.leaked} packets got through during atomic swaps\n`);
      process.exitCode = 1;
    }
    if (naive.leaked === 0) process.stderr.write('warning: the naive swaps leaked nothing either: the load may be too low to show a gap\n');
  } finally {
    await cleanup.runAll();
  }
}

/** The link must end where an even number of swaps leads: back on `expected`. */
function requireRunning(linkFd: number, expected: LoadedFirewall, when: string): void {
  const running = bpf.linkInfo(linkFd).progId;
  const want = bpf.progInfo(expected.progFd).id;
  if (running !== want) throw new Error(`${when}: the link runs program ${running}, expected ${want} (firewall ${expected.version})`);
}

await main();
