import { isSpanContextValid, trace, type SpanContext } from '@opentelemetry/api';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { subjects } from '../../common/keys.js';
import type { Logger } from '../../common/log.js';
import { extractContext } from '../../common/trace-nats.js';
import { TelemetryReport } from '../../proto/gen/bpfleet/v1/telemetry.js';
import { recordTelemetryDropped, recordTelemetryReceived } from '../metrics.js';
import type { TelemetryStore } from './telemetry-store.js';

/** What ingest reads of a NATS message. */
export type TelemetryMessage = Pick<Msg, 'subject' | 'data' | 'headers'>;

/**
 * Agents' telemetry into the TelemetryStore: every host's reports over NATS, decoded and
 * counted in the metrics, each with the trace context it carries in its headers (the agent
 * install that put the measured program in place), which the analysis span links to.
 */
export class TelemetryIngest {
  // Kept beside the reports rather than in them: the store and the analysis only know the
  // protobuf message, and a WeakMap lets a report the store drops take its context with it.
  private readonly contexts = new WeakMap<TelemetryReport, SpanContext>();
  private sub: Subscription | null = null;

  /** `clock`: the control plane's wall clock in ms, which stamps every report on arrival. */
  constructor(private readonly store: TelemetryStore, private readonly log: Logger, private readonly clock: () => number = Date.now) {}

  /** Subscribes to every host's telemetry subject on `nc`; messages are ingested until stop(). */
  start(nc: NatsConnection): void {
    const sub = nc.subscribe(subjects.telemetryAll);
    this.sub = sub;
    void (async () => {
      for await (const msg of sub) this.receive(msg);
    })();
  }

  stop(): void {
    this.sub?.unsubscribe();
    this.sub = null;
  }

  /**
   * Decodes one message, stamps it with the time it arrived and stores it: the report, or null when the message could
   * not be decoded (counted with its error type, logged with its subject, and dropped).
   */
  receive(msg: TelemetryMessage): TelemetryReport | null {
    try {
      const report = TelemetryReport.decode(msg.data);
      // Hosts' wall clocks disagree with ours and with each other: the analysis places
      // reports on this clock only (see samples.ts), and the agent's own stamp measures skew.
      report.receivedAtMs = this.clock();
      recordTelemetryReceived(report);
      const sc = trace.getSpanContext(extractContext(msg.headers));
      if (sc && isSpanContextValid(sc)) this.contexts.set(report, sc);
      this.store.add(report);
      return report;
    } catch (err) {
      recordTelemetryDropped(err);
      this.log.warn({ err: String(err), subject: msg.subject }, 'dropped an undecodable telemetry report');
      return null;
    }
  }

  /** The context of the install behind a report this ingest stored, if its message carried one. */
  contextOf(report: TelemetryReport): SpanContext | undefined {
    return this.contexts.get(report);
  }
}
