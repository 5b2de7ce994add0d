import { isSpanContextValid, trace, type SpanContext } from '@opentelemetry/api';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { BpfleetError } from '../../common/errors.js';
import { subjects } from '../../common/keys.js';
import type { Logger } from '../../common/log.js';
import { extractContext } from '../../common/trace-nats.js';
import { TelemetryReport } from '../../proto/gen/bpfleet/v1/telemetry.js';
import { recordTelemetryDropped, recordTelemetryReceived, recordTelemetryRefused } from '../metrics.js';
import { decodeReport } from './telemetry-decode.js';
import type { TelemetryStore } from './telemetry-store.js';

/** What ingest reads of a NATS message. */
export type TelemetryMessage = Pick<Msg, 'subject' | 'data' | 'headers'>;

/**
 * How far ahead of the control plane's clock a report may be stamped, by default (ms).
 * Analysis places reports on the receiver's clock, so a host's skew costs it nothing;
 * this only refuses stamps no honest host has (a host 30 s off must still be judged).
 */
export const DEFAULT_TELEMETRY_MAX_SKEW_MS = 300_000;
/** A refused report is logged at most this often per subject and reason (forgers can be fast). */
const REFUSAL_LOG_INTERVAL_MS = 60_000;

export interface IngestOptions {
  /** Reports stamped later than now + this are dropped (ms, ≥ 0; default DEFAULT_TELEMETRY_MAX_SKEW_MS, 5 min). */
  maxSkewMs?: number;
  /** The clock (ms since the epoch); tests pin it. */
  now?: () => number;
}

/**
 * Agents' telemetry into the TelemetryStore: every host's reports over NATS, decoded and
 * counted in the metrics, each with the trace context it carries in its headers (the agent
 * install that put the measured program in place), which the analysis span links to.
 *
 * A report is filed under its subject's host, which NATS lets only that host publish on
 * (docs/SECURITY.md): one whose payload names another host is dropped, and so is one stamped
 * further ahead than `maxSkewMs`, which would otherwise push every real report of its host
 * out of the store's retention window and blind the analysis to that host.
 */
export class TelemetryIngest {
  // Kept beside the reports rather than in them: the store and the analysis only know the
  // protobuf message, and a WeakMap lets a report the store drops take its context with it.
  private readonly contexts = new WeakMap<TelemetryReport, SpanContext>();
  private sub: Subscription | null = null;

  private readonly maxSkewMs: number;
  /** The control plane's wall clock in ms: it stamps every report on arrival and bounds how far ahead one may be. */
  private readonly now: () => number;
  private readonly lastRefusalLog = new Map<string, number>();

  constructor(private readonly store: TelemetryStore, private readonly log: Logger, opts: IngestOptions = {}) {
    this.maxSkewMs = opts.maxSkewMs ?? DEFAULT_TELEMETRY_MAX_SKEW_MS;
    if (!Number.isSafeInteger(this.maxSkewMs) || this.maxSkewMs < 0) {
      throw new BpfleetError('INVALID_ARGUMENT', 'USAGE', `telemetry max skew ${this.maxSkewMs} ms: a whole number of milliseconds, 0 or more`);
    }
    this.now = opts.now ?? Date.now;
  }

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
   * Decodes one message, stamps it with the time it arrived and stores it: the report, or
   * null when the message could not be decoded, failed decodeReport's checks, names another
   * host than its subject, or is stamped more than the skew ahead (each counted with its
   * reason as error.type, logged with its subject, and dropped). Never throws.
   */
  receive(msg: TelemetryMessage): TelemetryReport | null {
    try {
      const report = decodeReport(msg.subject, msg.data);
      const now = this.now();
      if (report.timestampMs > now + this.maxSkewMs) {
        return this.refuse('FUTURE_TIMESTAMP', msg.subject, { aheadMs: report.timestampMs - now, maxSkewMs: this.maxSkewMs });
      }
      // Hosts' wall clocks disagree with ours and with each other: the analysis places
      // reports on this clock only (see samples.ts), and the agent's own stamp measures skew.
      report.receivedAtMs = now;
      recordTelemetryReceived(report);
      const sc = trace.getSpanContext(extractContext(msg.headers));
      if (sc && isSpanContextValid(sc)) this.contexts.set(report, sc);
      this.store.add(report);
      return report;
    } catch (err) {
      if (err instanceof BpfleetError && err.reason === 'HOST_MISMATCH') {
        return this.refuse('HOST_MISMATCH', msg.subject, { claimedHost: TelemetryReport.decode(msg.data).host });
      }
      recordTelemetryDropped(err);
      this.log.warn({ err: String(err), subject: msg.subject.slice(0, 256) }, 'dropped an undecodable telemetry report');
      return null;
    }
  }

  private refuse(reason: 'HOST_MISMATCH' | 'FUTURE_TIMESTAMP', subject: string, detail: Record<string, unknown>): null {
    recordTelemetryRefused(reason);
    const key = `${reason} ${subject}`;
    const now = this.now();
    if (now - (this.lastRefusalLog.get(key) ?? -Infinity) >= REFUSAL_LOG_INTERVAL_MS) {
      this.lastRefusalLog.set(key, now);
      this.log.warn({ reason, subject, ...detail }, 'dropped a telemetry report (logged once a minute per subject)');
    }
    return null;
  }

  /** The context of the install behind a report this ingest stored, if its message carried one. */
  contextOf(report: TelemetryReport): SpanContext | undefined {
    return this.contexts.get(report);
  }
}
