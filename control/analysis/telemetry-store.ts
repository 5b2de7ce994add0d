import type { TelemetryReport } from '../../proto/gen/bpfleet/v1/telemetry.js';

/**
 * Recent telemetry per host, in memory. A controller that restarts loses it, which is
 * fine: analysis windows start at the step's start, and a new leader simply waits for
 * fresh reports (missing telemetry is inconclusive, never a pass).
 */
export class TelemetryStore {
  private readonly byHost = new Map<string, TelemetryReport[]>();
  private received = 0;

  constructor(private readonly retainMs = 10 * 60_000, private readonly maxPerHost = 1200) {}

  add(report: TelemetryReport): void {
    let list = this.byHost.get(report.host);
    if (!list) {
      list = [];
      this.byHost.set(report.host, list);
    }
    const last = list[list.length - 1];
    // Reports can arrive out of order after a reconnect; keep the list sorted.
    if (last && last.timestampMs > report.timestampMs) {
      const i = list.findIndex((r) => r.timestampMs > report.timestampMs);
      list.splice(i, 0, report);
    } else {
      list.push(report);
    }
    // Measured from the newest report, so a late straggler cannot hold old ones in place.
    const cutoff = list[list.length - 1]!.timestampMs - this.retainMs;
    let drop = 0;
    while (drop < list.length && (list[drop]!.timestampMs < cutoff || list.length - drop > this.maxPerHost)) drop++;
    if (drop) list.splice(0, drop);
    this.received++;
  }

  reports(host: string): readonly TelemetryReport[] {
    return this.byHost.get(host) ?? [];
  }

  lastSeen(host: string): number | null {
    const list = this.byHost.get(host);
    return list?.length ? list[list.length - 1]!.timestampMs : null;
  }

  get totalReceived(): number {
    return this.received;
  }
}
