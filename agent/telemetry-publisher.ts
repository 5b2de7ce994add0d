import { ROOT_CONTEXT, trace, type Context } from '@opentelemetry/api';
import type { NatsConnection } from '@nats-io/transport-node';
import { parseAttachment } from '../common/attachment.js';
import { subjects } from '../common/keys.js';
import type { Logger } from '../common/log.js';
import { injectHeaders } from '../common/trace-nats.js';
import { TelemetryReport, type AttachmentTelemetry } from '../proto/gen/bpfleet/v1/telemetry.js';
import type { DataplaneDriver } from './dataplane/driver.js';
import { agentMetrics } from './metrics.js';
import type { Reconciler } from './reconciler.js';

/**
 * The clocks a report is stamped with: the wall clock (for people and the lag metric; the
 * control plane does not trust it) and a monotonic clock in ms that never goes back while
 * the agent runs (interval lengths come from it).
 */
export interface TelemetryClock {
  wallMs(): number;
  monotonicMs(): number;
}

export const systemClock: TelemetryClock = { wallMs: Date.now, monotonicMs: () => Math.floor(performance.now()) };

/** Publishes one TelemetryReport per interval on bpfleet.telemetry.<host>. */
export class TelemetryPublisher {
  private timer: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;
  private sequence = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly reconciler: Reconciler,
    private readonly driver: DataplaneDriver,
    private readonly intervalMs: number,
    private readonly log: Logger,
    /** Trace context for a report about these attachments (TracedDriver.telemetryContext). */
    private readonly traceContext: (attachments: readonly string[]) => Context = () => ROOT_CONTEXT,
    private readonly clock: TelemetryClock = systemClock,
  ) {}

  start(): void {
    const publish = () => void this.publishOnce().catch((err) => this.log.warn({ err }, 'telemetry report failed'));
    this.timer = setInterval(publish, this.intervalMs);
    // A report right after a swap starts the new program's first sample interval at once:
    // the canary's first verdict then needs one interval of evidence, not up to two.
    this.unsubscribe = this.reconciler.onChange(publish);
  }

  async collect(): Promise<TelemetryReport> {
    const attachments: AttachmentTelemetry[] = [];
    for (const s of this.reconciler.state().attachments) {
      const stats = await this.driver.stats(parseAttachment(s.attachment));
      if (!stats) continue;
      attachments.push({
        attachment: s.attachment,
        module: s.module,
        progId: s.progId,
        runCount: Number(stats.runCount),
        runTimeNs: Number(stats.runTimeNs),
        ifaceRxPackets: Number(stats.ifaceRxPackets ?? 0n),
        ifaceTxPackets: Number(stats.ifaceTxPackets ?? 0n),
        stackRxPackets: Number(stats.stackRxPackets ?? 0n),
        counters: Object.fromEntries(Object.entries(stats.counters).map(([k, v]) => [k, Number(v)])),
      });
    }
    return {
      host: this.reconciler.host,
      timestampMs: this.clock.wallMs(),
      monotonicMs: this.clock.monotonicMs(),
      sequence: ++this.sequence,
      attachments,
      // Stamped by the control plane on receipt.
      receivedAtMs: 0,
    };
  }

  async publishOnce(): Promise<void> {
    const report = await this.collect();
    // A closed or reconnecting connection buffers or throws; telemetry is best effort and
    // the analysis treats gaps as missing evidence.
    // The context of the install that put the measured program in place, in W3C headers:
    // the controller's analysis links its verdict to it (control/tracing.ts).
    const ctx = this.traceContext(report.attachments.map((a) => a.attachment));
    const options = trace.getSpanContext(ctx) ? { headers: injectHeaders(undefined, ctx) } : undefined;
    this.nc.publish(subjects.telemetry(report.host), TelemetryReport.encode(report).finish(), options);
    agentMetrics().telemetryReports.add(1);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.unsubscribe?.();
    this.unsubscribe = null;
  }
}
