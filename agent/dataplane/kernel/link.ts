import { rmSync } from 'node:fs';
import { BpfleetError } from '../../../common/errors.js';
import * as bpf from './libbpf.js';
import type { NetnsSwitch } from './netns.js';

/** Short name of a link in errors ("attach xdp link: ..."). */
export type LinkKind = 'xdp' | 'tcx';

const KIND_BY_ATTACH_TYPE: Record<number, LinkKind> = {
  [bpf.BPF_XDP]: 'xdp',
  [bpf.BPF_TCX_INGRESS]: 'tcx',
  [bpf.BPF_TCX_EGRESS]: 'tcx',
};

const KIND_BY_LINK_TYPE: Record<number, LinkKind> = {
  [bpf.BPF_LINK_TYPE_XDP]: 'xdp',
  [bpf.BPF_LINK_TYPE_TCX]: 'tcx',
};

/** The kind of link an attach type makes; throws for attach types bpfleet does not use. */
export function linkKind(attachType: number): LinkKind {
  const kind = KIND_BY_ATTACH_TYPE[attachType];
  if (!kind) throw new BpfleetError('INTERNAL', 'KERNEL', `attach link: attach type ${attachType} is not xdp or tcx`);
  return kind;
}

/** Where a new link attaches. */
export interface LinkTarget {
  /** BPF_XDP, BPF_TCX_INGRESS or BPF_TCX_EGRESS. */
  attachType: number;
  /** Interface name, resolved in `CreateOptions.netns`. */
  iface: string;
}

export interface CreateOptions {
  /** Network namespace of `iface`; the calling thread's own when absent. */
  netns?: NetnsSwitch | null;
}

export interface UpdateOptions {
  /** The program the link must run right now: the compare in compare-and-swap. */
  expectedProgFd: number;
  /**
   * What a refusal means, in the caller's words: the DRIFT error then reads
   * "update <kind> link: <drift>". Default: "the link no longer runs the expected program".
   */
  drift?: string;
}

/**
 * A bpf_link (cilium/ebpf's link.Link): what holds a program on a hook, and the only way
 * bpfleet replaces one, by update() with the program it expects (the kernel's
 * compare-and-swap). It owns one fd. The kernel detaches the program once no fd and no pin
 * holds the link, so pin() a link that must outlive the process.
 *
 * Every error is a BpfleetError prefixed with what was tried ("update xdp link: ..."):
 * FAILED_PRECONDITION/DRIFT when the hook is not as the caller expected, INTERNAL with
 * ATTACH_FAILED or SWAP_FAILED for other failures of create() and update(), INTERNAL/KERNEL
 * for the rest, and FAILED_PRECONDITION/CLOSED after close().
 */
export class BpfLink {
  private fd: number | null;

  private constructor(fd: number, readonly kind: LinkKind, private pinnedPath: string | null) {
    this.fd = fd;
  }

  /**
   * Attaches `progFd` to `target`: a new link, not pinned. An XDP hook that already holds a
   * program is DRIFT: bpfleet pins every link it makes, so that one is someone else's.
   */
  static create(progFd: number, target: LinkTarget, opts: CreateOptions = {}): BpfLink {
    const kind = linkKind(target.attachType);
    const inNetns = <T>(fn: () => T): T => (opts.netns ? opts.netns.run(fn) : fn());
    try {
      const fd = inNetns(() => bpf.linkCreate(progFd, bpf.ifNameToIndex(target.iface), target.attachType));
      return new BpfLink(fd, kind, null);
    } catch (err) {
      const context = `attach ${kind} link`;
      if (err instanceof bpf.SysError && err.code === 'EBUSY') {
        throw new BpfleetError('FAILED_PRECONDITION', 'DRIFT',
          `${context}: ${target.iface} already has a program bpfleet did not attach`, undefined, { cause: err });
      }
      if (kind === 'xdp' && err instanceof bpf.SysError && err.code === 'ERANGE') throw mtuTooLarge(context, target.iface, inNetns, err);
      throw new BpfleetError('INTERNAL', 'ATTACH_FAILED', `${context}: ${message(err)}`, undefined, { cause: err });
    }
  }

  /** Opens the link pinned at `path`; unpin() then removes that pin. */
  static openPinned(path: string): BpfLink {
    let fd: number;
    try {
      fd = bpf.objGet(path);
    } catch (err) {
      throw kernelError('open pinned link', err);
    }
    return BpfLink.adopt(fd, path);
  }

  /** Like openPinned, but null when nothing is pinned at `path`. */
  static openIfPinned(path: string): BpfLink | null {
    let fd: number | null;
    try {
      fd = bpf.objGetIfPinned(path);
    } catch (err) {
      throw kernelError('open pinned link', err);
    }
    return fd === null ? null : BpfLink.adopt(fd, path);
  }

  private static adopt(fd: number, path: string): BpfLink {
    try {
      const { type } = bpf.linkInfo(fd);
      const kind = KIND_BY_LINK_TYPE[type];
      if (!kind) throw new Error(`${path} is a link of type ${type}, not xdp or tcx`);
      return new BpfLink(fd, kind, path);
    } catch (err) {
      bpf.closeFd(fd);
      throw kernelError('open pinned link', err);
    }
  }

  /**
   * Replaces the link's program with `newProgFd` only if it runs `expectedProgFd`'s now
   * (BPF_F_REPLACE); the kernel's EPERM for a link running something else is DRIFT. Runs on a
   * worker thread: an XDP update waits for an RCU grace period (10–50 ms under load) that
   * must not stall the event loop. Do not close() the link before the promise settles.
   */
  async update(newProgFd: number, opts: UpdateOptions): Promise<void> {
    const context = `update ${this.kind} link`;
    const fd = this.open(context);
    try {
      await bpf.linkUpdateAsync(fd, newProgFd, opts.expectedProgFd);
    } catch (err) {
      if (err instanceof bpf.SysError && err.code === 'EPERM') {
        throw new BpfleetError('FAILED_PRECONDITION', 'DRIFT',
          `${context}: ${opts.drift ?? 'the link no longer runs the expected program'}`, undefined, { cause: err });
      }
      throw new BpfleetError('INTERNAL', 'SWAP_FAILED', `${context}: ${message(err)}`, undefined, { cause: err });
    }
  }

  /** Pins the link at `path` (on a bpffs, where nothing is pinned yet). */
  pin(path: string): void {
    const context = `pin ${this.kind} link`;
    try {
      bpf.objPin(this.open(context), path);
    } catch (err) {
      throw kernelError(context, err);
    }
    this.pinnedPath = path;
  }

  /** Removes the pin that pin() or openPinned() knows of, if any; the link lives while its fd does. */
  unpin(): void {
    if (this.pinnedPath === null) return;
    try {
      rmSync(this.pinnedPath, { force: true });
    } catch (err) {
      throw kernelError(`unpin ${this.kind} link`, err);
    }
    this.pinnedPath = null;
  }

  /**
   * Detaches the program now; the link stays, defunct, until its fds and pins are gone.
   * Dropping the last reference detaches too, but from a kernel work item a moment later:
   * long enough for the next attach to find the hook still busy.
   */
  detach(): void {
    const context = `detach ${this.kind} link`;
    try {
      bpf.linkDetach(this.open(context));
    } catch (err) {
      throw kernelError(context, err);
    }
  }

  /** What the kernel says of the link now: ids, type, and ifindex 0 once it is defunct. */
  info(): bpf.LinkInfo {
    const context = `info ${this.kind} link`;
    try {
      return bpf.linkInfo(this.open(context));
    } catch (err) {
      throw kernelError(context, err);
    }
  }

  /** Closes the fd; a pinned link stays attached. Calling it again does nothing. */
  close(): void {
    if (this.fd === null) return;
    bpf.closeFd(this.fd);
    this.fd = null;
  }

  private open(context: string): number {
    if (this.fd === null) throw new BpfleetError('FAILED_PRECONDITION', 'CLOSED', `${context}: link is closed`);
    return this.fd;
  }
}

/**
 * A driver's native XDP takes a packet in one page unless the program says it can read
 * fragments (BPF_F_XDP_HAS_FRAGS, libbpf's SEC("xdp.frags")); with an MTU too large for one
 * page it refuses the attach with ERANGE (veth: "Peer MTU is too large to set XDP", where
 * the peer's MTU counts; measured on kernel 6.18 with MTU 9000).
 */
function mtuTooLarge(context: string, iface: string, inNetns: <T>(fn: () => T) => T, err: bpf.SysError): BpfleetError {
  let mtu = '';
  try {
    mtu = ` (MTU ${inNetns(() => bpf.interfaceMtu(iface))})`;
  } catch {
    // The MTU only illustrates the message; the refusal stands without it.
  }
  return new BpfleetError('FAILED_PRECONDITION', 'MTU_TOO_LARGE',
    `${context}: ${iface}${mtu} has an MTU too large for native XDP with a program that does not take fragments ` +
      '(the driver answered ERANGE; on a veth the peer\'s MTU counts too): use a frags-aware program (SEC("xdp.frags"), ' +
      `which reads packets larger than a page with bpf_xdp_load_bytes) or lower the MTU (ip link set dev ${iface} mtu 1500, and its veth peer)`,
    undefined, { cause: err });
}

function kernelError(context: string, err: unknown): BpfleetError {
  if (err instanceof BpfleetError) return err;
  return new BpfleetError('INTERNAL', 'KERNEL', `${context}: ${message(err)}`, undefined, { cause: err });
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
