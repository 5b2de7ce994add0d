import type { Attachment } from '../../common/attachment.js';
import type { ModuleManifest } from '../../proto/gen/bpfleet/v1/module.js';

/** A verified module object, ready to load. */
export interface ModuleArtifact {
  manifest: ModuleManifest;
  /** "sha256:<hex>" of `object`; the caller has checked it. */
  digest: string;
  object: Uint8Array;
}

/** What runs on one attachment, read back from the kernel (or the sim). */
export interface RunningModule {
  attachment: string;
  digest: string;
  name: string;
  version: string;
  progId: number;
  linkId: number;
  progTag: string;
}

export interface ProgramStats {
  /** Kernel BPF stats of the attached program. */
  runCount: bigint;
  runTimeNs: bigint;
  /** The module's `bpfleet_counters`, summed over CPUs, by manifest name. */
  counters: Record<string, bigint>;
  /** The attachment's interface counters: what got past the module, which it cannot fake. */
  ifaceRxPackets?: bigint;
  ifaceTxPackets?: bigint;
  /**
   * Packets that got past the module, which a drop never adds to (unlike ifaceRxPackets,
   * which on veth with native XDP, kernel 6.18, counts XDP_DROP'ped packets too). At an XDP
   * attachment: what bpfleet's drop witness at tcx ingress of the same interface counted,
   * that interface only. Otherwise (tcx-ingress, or no witness): IPv4 + IPv6 packets that
   * reached the IP layer of the attachment's network namespace (Ip/Ip6 InReceives), which
   * witnesses one interface only where that is the namespace's only one.
   */
  stackRxPackets?: bigint;
}

/** Why an attachment bpfleet installed runs nothing now (AttachmentState.reason). */
export type BrokenReason = 'NO_INTERFACE' | 'IFACE_RENAMED' | 'NETNS_GONE' | 'NOT_ATTACHED' | 'MTU_TOO_LARGE' | 'REATTACH_FAILED';

/** One attachment bpfleet installed, as check() found it in the kernel (or the sim). */
export type AttachmentHealth =
  | {
    attachment: string;
    status: 'running';
    running: RunningModule;
    /** True when check() itself re-attached the module (its interface came back). */
    reattached: boolean;
  }
  | {
    attachment: string;
    status: 'broken';
    /** The module bpfleet installed there, which the kernel no longer runs on it. */
    digest: string;
    name: string;
    version: string;
    reason: BrokenReason;
    /** What was seen, for operators ("interface eth0 is gone (ifindex 3)"). */
    message: string;
  };

/** Time spent in each phase of an install, in milliseconds. */
export interface InstallTiming {
  loadMs: number;
  swapMs: number;
}

export interface InstallResult {
  running: RunningModule;
  /** False when the attachment already ran this digest: nothing was touched. */
  changed: boolean;
  timing: InstallTiming;
}

/**
 * The one interface between the agent and a dataplane: the kernel through libbpf, or the
 * in-memory sim for scale tests. Both run the same conformance suite.
 *
 * install() is a compare-and-swap: it makes `attachment` run `artifact` only if the
 * attachment currently runs `expectedDigest` (null: nothing attached). Otherwise it throws
 * BpfleetError FAILED_PRECONDITION/DRIFT and changes nothing. A load or verifier failure
 * also changes nothing. The swap itself is atomic: no packet sees "no program".
 */
export interface DataplaneDriver {
  readonly kind: 'kernel' | 'sim';
  /** Hook kinds this host supports ("xdp", "tcx-ingress", ...). */
  capabilities(): string[];
  /** Modules found running (e.g. pinned by a previous agent process): adopt them. */
  observe(): Promise<RunningModule[]>;
  install(attachment: Attachment, artifact: ModuleArtifact, expectedDigest: string | null): Promise<InstallResult>;
  /**
   * Loads `artifact` for `attachment`'s hook as install would, through the verifier, and
   * keeps nothing: no pin, map, link or running program changes. Throws what install would
   * throw for the object; resolves with the load time (ms). A rollout's pre-flight.
   */
  verify(attachment: Attachment, artifact: ModuleArtifact): Promise<{ loadMs: number }>;
  /**
   * Compares every attachment bpfleet installed with what the kernel runs on it now: the
   * interface may be gone, renamed or re-created, the network namespace gone. A module whose
   * interface exists again under the attachment's name is attached again (the same program,
   * its persistent maps intact); the rest is reported broken with a reason. Never reports
   * running what the kernel does not run.
   */
  check(): Promise<AttachmentHealth[]>;
  stats(attachment: Attachment): Promise<ProgramStats | null>;
  /** Detaches and unpins; a no-op when nothing is attached. */
  remove(attachment: Attachment): Promise<void>;
  /** Releases fds; pinned programs keep running. */
  close(): Promise<void>;
}
