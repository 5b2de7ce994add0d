/**
 * One telemetry message from NATS into a report the store and the analysis can trust.
 * Anyone on the bus can publish on an agent's subject, so every field a consumer keys on
 * or keeps is checked: a report that passes names its own subject's host, has a plausible
 * stamp and no more attachments, counters or string bytes than an agent ever sends.
 */
import { BpfleetError } from '../../common/errors.js';
import { HOST_NAME_RE, subjects } from '../../common/keys.js';
import { bounded, echo, FIELD_BYTES } from '../../common/limits.js';
import { MAX_COUNTERS } from '../../common/manifest.js';
import { TelemetryReport } from '../../proto/gen/bpfleet/v1/telemetry.js';

/** Attachments per report: an agent reports one per attachment it manages. */
export const MAX_REPORT_ATTACHMENTS = 64;

const SUBJECT_PREFIX = subjects.telemetry('');

function invalid(subject: string, field: string, why: string): BpfleetError {
  return new BpfleetError('INVALID_ARGUMENT', 'INVALID_REPORT', `telemetry on ${echo(subject)}: ${field}: ${why}`);
}

/**
 * Decodes and checks one message. Throws a BpfleetError: UNDECODABLE_REPORT when the bytes
 * are not a TelemetryReport (the field is the whole report), INVALID_REPORT naming the field
 * otherwise (host, timestampMs, attachments[i].…).
 */
export function decodeReport(subject: string, data: Uint8Array): TelemetryReport {
  let report: TelemetryReport;
  try {
    report = TelemetryReport.decode(data);
  } catch (err) {
    throw new BpfleetError('INVALID_ARGUMENT', 'UNDECODABLE_REPORT',
      `telemetry on ${echo(subject)}: report: not a TelemetryReport (${echo((err as Error).message, 120)})`, undefined, { cause: err });
  }
  if (!HOST_NAME_RE.test(report.host)) throw invalid(subject, 'host', `${echo(report.host)} is not a host name`);
  if (subject.startsWith(SUBJECT_PREFIX) && subject !== subjects.telemetry(report.host)) {
    throw new BpfleetError('INVALID_ARGUMENT', 'HOST_MISMATCH', `telemetry on ${echo(subject)}: host: ${echo(report.host)} is not the subject's host`);
  }
  if (!Number.isSafeInteger(report.timestampMs) || report.timestampMs <= 0) throw invalid(subject, 'timestampMs', `${report.timestampMs} is not a time in ms since the epoch`);
  if (report.attachments.length > MAX_REPORT_ATTACHMENTS) throw invalid(subject, 'attachments', `${report.attachments.length} is over the limit of ${MAX_REPORT_ATTACHMENTS}`);
  report.attachments.forEach((a, i) => {
    const at = `attachments[${i}]`;
    try {
      bounded(`${at}.attachment`, a.attachment, FIELD_BYTES.attachment);
      if (a.module) {
        bounded(`${at}.module.name`, a.module.name, FIELD_BYTES.name);
        bounded(`${at}.module.version`, a.module.version, FIELD_BYTES.version);
        bounded(`${at}.module.digest`, a.module.digest, FIELD_BYTES.digest);
      }
    } catch (err) {
      throw invalid(subject, (err as Error).message.split(':')[0]!, 'over its limit');
    }
    const counters = Object.keys(a.counters);
    if (counters.length > MAX_COUNTERS) throw invalid(subject, `${at}.counters`, `${counters.length} is over the limit of ${MAX_COUNTERS}`);
    if (counters.some((c) => c.length > 128)) throw invalid(subject, `${at}.counters`, 'a name is over 128 characters');
  });
  return report;
}
