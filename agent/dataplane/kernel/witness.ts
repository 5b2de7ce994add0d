/**
 * bpfleet's drop witness for an XDP attachment: a program of its own at tcx ingress of the
 * same interface, first in the chain, counting the packets that got past XDP there. tcx runs
 * after XDP and before the IP layer, per interface, so traffic on the namespace's other
 * interfaces does not count, and XDP_DROP'ped packets never do (unlike veth's rx_packets,
 * which counts them: measured on kernel 6.18). A module cannot fake it: it never sees the
 * witness's map. Pinned beside the module's link, it outlives the agent process.
 */
import { rmSync } from 'node:fs';
import * as bpf from './libbpf.js';
import { BpfLink } from './link.js';
import type { NetnsSwitch } from './netns.js';

/**
 * Makes the witness pinned at `path` count on `iface` (of `netns`): kept when it already
 * does, otherwise (absent, defunct, or on an interface renamed since) replaced by a new one
 * at the head of the tcx ingress chain.
 */
export function ensureWitness(path: string, iface: string, netns: NetnsSwitch | null): void {
  const inNetns = <T>(fn: () => T): T => (netns ? netns.run(fn) : fn());
  const ifindex = inNetns(() => bpf.ifNameToIndex(iface));
  const old = BpfLink.openIfPinned(path);
  if (old) {
    try {
      const { ifindex: on } = old.info();
      if (on === ifindex) return;
      if (on !== 0) old.detach();
      old.unpin();
    } finally {
      old.close();
    }
  }
  const mapFd = bpf.mapCreate(bpf.BPF_MAP_TYPE_PERCPU_ARRAY, 'bpfleet_witness', 4, 8, 1);
  const progFd = (() => {
    try {
      return bpf.loadWitnessProgram(mapFd);
    } finally {
      bpf.closeFd(mapFd);
    }
  })();
  try {
    const linkFd = inNetns(() => bpf.linkCreate(progFd, ifindex, bpf.BPF_TCX_INGRESS, bpf.BPF_F_BEFORE));
    bpf.withFd(linkFd, (fd) => bpf.objPin(fd, path));
  } finally {
    bpf.closeFd(progFd);
  }
}

/** Packets the witness at `path` counted, summed over CPUs; null when there is none, or it is defunct. */
export function witnessPackets(path: string): bigint | null {
  const link = BpfLink.openIfPinned(path);
  if (!link) return null;
  try {
    const info = link.info();
    if (info.ifindex === 0) return null;
    const [mapId] = bpf.withFd(bpf.progFdById(info.progId), bpf.progInfo).mapIds;
    if (mapId === undefined) return null;
    return bpf.withFd(bpf.mapFdById(mapId), (fd) => bpf.lookupPerCpuU64(fd, 0).reduce((a, v) => a + v, 0n));
  } finally {
    link.close();
  }
}

/** Detaches and unpins the witness at `path`, if any. */
export function removeWitness(path: string): void {
  const link = BpfLink.openIfPinned(path);
  if (!link) return;
  try {
    if (link.info().ifindex !== 0) link.detach();
  } finally {
    link.close();
  }
  rmSync(path, { force: true });
}
