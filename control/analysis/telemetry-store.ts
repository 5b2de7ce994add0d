import type { TelemetryReport } from '../../proto/gen/bpfleet/v1/telemetry.js';

/** Distinct attachment names, versions and digests shared at once; past it the table starts over. */
export const MAX_SHARED_STRINGS = 10_000;

/** Bounds of the store (docs/ARCHITECTURE.md, "Limits"). */
export const TELEMETRY_LIMITS = {
  /** How far behind a host's newest report its oldest kept one may be. */
  retainMs: 10 * 60_000,
  /** Reports kept per host: ten minutes at two reports a second. */
  reportsPerHost: 1200,
  /** Hosts kept; past it the host that reported least recently is forgotten. */
  hosts: 100_000,
} as const;

/**
 * Recent telemetry per host, in memory, in the order it arrived and on the control plane's
 * clock (`receivedAtMs`, stamped by the ingest): a host's own wall clock places nothing. A
 * controller that restarts loses it, which is fine: analysis windows start at the step's
 * start, and a new leader simply waits for fresh reports (missing telemetry is
 * inconclusive, never a pass).
 *
 * Bounded three ways (TELEMETRY_LIMITS): reports per host by age and count, hosts by
 * count (least recently reporting first out, so a stream of made-up host names cannot
 * grow it), and shared strings (MAX_SHARED_STRINGS).
 */
export class TelemetryStore {
  private readonly byHost = new Map<string, TelemetryReport[]>();
  private received = 0;
  private readonly strings = new Map<string, string>();

  constructor(
    private readonly retainMs: number = TELEMETRY_LIMITS.retainMs,
    private readonly maxPerHost: number = TELEMETRY_LIMITS.reportsPerHost,
    private readonly maxHosts: number = TELEMETRY_LIMITS.hosts,
  ) {}

  add(report: TelemetryReport): void {
    this.share(report);
    let list = this.byHost.get(report.host);
    if (list) {
      // Moved to the end: the map's order is the order hosts last reported in.
      this.byHost.delete(report.host);
    } else {
      list = [];
      if (this.byHost.size >= this.maxHosts) this.byHost.delete(this.byHost.keys().next().value!);
    }
    this.byHost.set(report.host, list);
    const last = list[list.length - 1];
    // Arrival order is receive-time order; should our own clock step back, the list stays
    // sorted (a report never lands before one that arrived earlier).
    if (last && last.receivedAtMs > report.receivedAtMs) report.receivedAtMs = last.receivedAtMs;
    list.push(report);
    const cutoff = report.receivedAtMs - this.retainMs;
    let drop = 0;
    while (drop < list.length && (list[drop]!.receivedAtMs < cutoff || list.length - drop > this.maxPerHost)) drop++;
    if (drop) list.splice(0, drop);
    this.received++;
  }

  /**
   * Every report repeats the same few attachment names, module versions and digests. One
   * copy of each keeps ten minutes of a fleet's reports smaller, and lets the analysis
   * compare digests, sample after sample, by reference instead of character by character.
   */
  private share(report: TelemetryReport): void {
    for (const t of report.attachments) {
      t.attachment = this.intern(t.attachment);
      if (t.module) {
        t.module.name = this.intern(t.module.name);
        t.module.version = this.intern(t.module.version);
        t.module.digest = this.intern(t.module.digest);
      }
    }
  }

  private intern(s: string): string {
    const known = this.strings.get(s);
    if (known !== undefined) return known;
    // Bounded, so a stream of junk versions cannot grow it forever.
    if (this.strings.size >= MAX_SHARED_STRINGS) this.strings.clear();
    this.strings.set(s, s);
    return s;
  }

  /** Everything kept for the host, oldest first. */
  reports(host: string): readonly TelemetryReport[] {
    return this.byHost.get(host) ?? [];
  }

  /**
   * The host's reports received at `from` or later, oldest first, led by the newest one before
   * `from` if any: what an analysis of a window starting at `from` reads, without walking the
   * minutes of history kept before it. The lead pairs with nothing inside the window, but
   * still tells how long ago a host that went quiet before the window last reported.
   */
  since(host: string, from: number): readonly TelemetryReport[] {
    const list = this.byHost.get(host);
    if (!list) return [];
    const start = Math.max(0, firstAfter(list, from - 1) - 1);
    return start === 0 ? list : list.slice(start);
  }

  /** since(host, from) for one analysis: each host's window is cut once, however often it is read. */
  reader(from: number): (host: string) => readonly TelemetryReport[] {
    const cut = new Map<string, readonly TelemetryReport[]>();
    return (host) => {
      let reports = cut.get(host);
      if (!reports) {
        reports = this.since(host, from);
        cut.set(host, reports);
      }
      return reports;
    };
  }

  lastSeen(host: string): number | null {
    const list = this.byHost.get(host);
    return list?.length ? list[list.length - 1]!.receivedAtMs : null;
  }

  get totalReceived(): number {
    return this.received;
  }

  /** Hosts with reports kept. */
  get hostCount(): number {
    return this.byHost.size;
  }

  /** Distinct strings shared now (at most MAX_SHARED_STRINGS). */
  get sharedStrings(): number {
    return this.strings.size;
  }
}

/** Index of the first report received after `t` in a list in arrival order (binary search). */
function firstAfter(list: readonly TelemetryReport[], t: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid]!.receivedAtMs > t) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
