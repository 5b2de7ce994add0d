import type { TelemetryReport } from '../../proto/gen/bpfleet/v1/telemetry.js';

const MAX_SHARED_STRINGS = 10_000;

/**
 * Recent telemetry per host, in memory, in the order it arrived and on the control plane's
 * clock (`receivedAtMs`, stamped by the ingest): a host's own wall clock places nothing. A
 * controller that restarts loses it, which is fine: analysis windows start at the step's
 * start, and a new leader simply waits for fresh reports (missing telemetry is
 * inconclusive, never a pass).
 */
export class TelemetryStore {
  private readonly byHost = new Map<string, TelemetryReport[]>();
  private received = 0;
  private readonly strings = new Map<string, string>();

  constructor(private readonly retainMs = 10 * 60_000, private readonly maxPerHost = 1200) {}

  add(report: TelemetryReport): void {
    this.share(report);
    let list = this.byHost.get(report.host);
    if (!list) {
      list = [];
      this.byHost.set(report.host, list);
    }
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
