import { formatAttachment, type Attachment } from '../../../common/attachment.js';
import type { RunningModule } from '../driver.js';

/** How a module treats traffic in the sim; fixed at load, as compiled code would be. */
export interface ModuleBehaviour {
  /** Fraction of the packets it runs on that it drops, 0..1. */
  dropRate: number;
  runTimeNsPerPacket: number;
}

export const DEFAULT_BEHAVIOUR: ModuleBehaviour = { dropRate: 0, runTimeNsPerPacket: 100 };

/** A program loaded into the simulated kernel, with the traffic it has seen so far. */
export interface SimProgram {
  progId: number;
  progTag: string;
  digest: string;
  name: string;
  version: string;
  counterNames: string[];
  /** Its `bpfleet_counters` map is pinned, so a next version that also pins it counts on. */
  pinsCounters: boolean;
  behaviour: ModuleBehaviour;
  runs: number;
  drops: number;
  /** Counter values taken over from the previous version through the pinned map. */
  counterBase: number[];
}

export interface SimLink {
  linkId: number;
  attachment: Attachment;
  program: SimProgram;
}

export interface SimInterface {
  /**
   * Thousandths of a packet the wire has offered in each direction: pps × ms, an integer for
   * integer clocks, so slicing time finely never loses a packet to rounding.
   */
  offeredMilli: number;
  rxPackets: number;
  txPackets: number;
}

export type NewProgram = Omit<SimProgram, 'progId' | 'progTag' | 'runs' | 'drops' | 'counterBase'>;

// Process-wide, like the kernel's id allocators, so ids stay unique across the thousands of
// hosts a scale test runs in one process; high, so a sim id is never mistaken for a real one.
let nextProgId = 1_000_000;
let nextLinkId = 1_000_000;

/**
 * What a host's kernel holds: links, the programs they run and the interfaces' packet
 * counters. It outlives any one SimDriver, as pinned links outlive an agent process.
 */
export class SimHostState {
  /** By formatted attachment ("xdp:eth0"). */
  readonly links = new Map<string, SimLink>();
  /** By interface name; an interface starts counting when something is first attached to it. */
  readonly interfaces = new Map<string, SimInterface>();
  /** Links whose interface was deleted, by formatted attachment: they run nothing. */
  readonly defunct = new Map<string, SimLink>();
  /** Interfaces deleted (and not created again) since something was attached to them. */
  readonly deletedInterfaces = new Set<string>();
  /** Simulated time up to which traffic has been accounted; null before any attach. */
  clockMs: number | null = null;

  load(program: NewProgram): SimProgram {
    return {
      ...program,
      progId: nextProgId++,
      progTag: program.digest.replace(/^sha256:/, '').slice(0, 16),
      runs: 0,
      drops: 0,
      counterBase: [],
    };
  }

  /** Points the attachment's link at `program` in one step, creating the link on first use. */
  attach(attachment: Attachment, program: SimProgram): SimLink {
    const key = formatAttachment(attachment);
    const link = this.links.get(key);
    if (link) {
      if (link.program.pinsCounters && program.pinsCounters) {
        program.counterBase = link.program.counterNames.map((_, i) => counterValue(link.program, i));
      }
      link.program = program;
      return link;
    }
    if (!this.interfaces.has(attachment.iface)) {
      this.interfaces.set(attachment.iface, { offeredMilli: 0, rxPackets: 0, txPackets: 0 });
    }
    const created = { linkId: nextLinkId++, attachment, program };
    this.links.set(key, created);
    return created;
  }

  detach(attachment: Attachment): void {
    this.links.delete(formatAttachment(attachment));
    this.defunct.delete(formatAttachment(attachment));
  }

  /** As `ip link del`: the links on `iface` turn defunct, keeping the program they held. */
  deleteInterface(iface: string): void {
    this.deletedInterfaces.add(iface);
    for (const [key, link] of this.links) {
      if (link.attachment.iface !== iface) continue;
      this.links.delete(key);
      this.defunct.set(key, link);
    }
  }

  /** As `ip link add`: the name exists again, with nothing attached. */
  createInterface(iface: string): void {
    this.deletedInterfaces.delete(iface);
  }

  running(attachment: Attachment): SimLink | undefined {
    return this.links.get(formatAttachment(attachment));
  }

  observe(): RunningModule[] {
    return [...this.links.values()].map(runningModule).sort((a, b) => a.attachment.localeCompare(b.attachment));
  }
}

export function runningModule({ attachment, linkId, program: p }: SimLink): RunningModule {
  return {
    attachment: formatAttachment(attachment),
    digest: p.digest,
    name: p.name,
    version: p.version,
    progId: p.progId,
    linkId,
    progTag: p.progTag,
  };
}

// The sim cannot know what a slot means, so every slot counts the packets its program ran on.
export function counterValue(program: SimProgram, slot: number): number {
  return (program.counterBase[slot] ?? 0) + program.runs;
}
