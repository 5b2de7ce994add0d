/**
 * Size limits on what clients send, checked where a request enters (control/api/*,
 * agent/server.ts) so that nothing oversized reaches etcd or an error message. etcd refuses
 * a request over 1.5 MiB and its client then opens a circuit breaker for every caller;
 * gRPC carries an error's message in a header, which a long echo overflows. The table in
 * docs/ARCHITECTURE.md ("Limits") lists every limit and what happens past it.
 */
import { BpfleetError } from './errors.js';

/** Longest value of each kind of request field, in UTF-8 bytes. */
export const FIELD_BYTES = {
  /** Rollout ids: `<module>-<12 digits>-<4 hex>` is at most 81. */
  id: 128,
  /** Module and host names (DNS labels, see common/manifest.ts). */
  name: 63,
  /** Module versions (see common/manifest.ts). */
  version: 64,
  /** `<hook>:<interface>`: the longest hook and a 15-character interface name. */
  attachment: 32,
  /** A reason typed with a verb. */
  reason: 1024,
  /** A module's description. */
  description: 4096,
  /** A selector's or a label's key and value. */
  labelKey: 63,
  labelValue: 256,
  /** Digests ("sha256:" and 64 hex) and signing key ids. */
  digest: 71,
  keyId: 64,
} as const;

/** Entries in a rollout's selector. */
export const MAX_SELECTOR_ENTRIES = 32;

/** Characters of an input quoted in an error message; the rest is cut with its length said. */
export const ECHO_CHARS = 64;

/**
 * `value` quoted for an error message: at most ECHO_CHARS characters, then how long it
 * was. Every message that repeats client input goes through here.
 */
export function echo(value: string, chars: number = ECHO_CHARS): string {
  const quoted = JSON.stringify(value.length > chars ? value.slice(0, chars) : value);
  return value.length > chars ? `${quoted.slice(0, -1)}…" (${value.length} characters)` : quoted;
}

/**
 * `value` unless it is longer than `maxBytes` UTF-8 bytes: then INVALID_ARGUMENT/FIELD_TOO_LONG
 * naming `field` and the limit.
 */
export function bounded(field: string, value: string, maxBytes: number): string {
  // Cheap upper bound first: a UTF-8 encoding is at most 3 bytes per UTF-16 unit.
  if (value.length * 3 > maxBytes) {
    const bytes = Buffer.byteLength(value);
    if (bytes > maxBytes) throw new BpfleetError('INVALID_ARGUMENT', 'FIELD_TOO_LONG', `${field}: ${bytes} bytes is over the ${maxBytes}-byte limit`);
  }
  return value;
}

/** Each key and value of a selector or label map within its limit, and at most `maxEntries` of them. */
export function boundedMap(field: string, map: Record<string, string>, maxEntries: number = MAX_SELECTOR_ENTRIES): Record<string, string> {
  const entries = Object.entries(map);
  if (entries.length > maxEntries) throw new BpfleetError('INVALID_ARGUMENT', 'FIELD_TOO_LONG', `${field}: ${entries.length} entries is over the limit of ${maxEntries}`);
  for (const [k, v] of entries) {
    bounded(`${field} key`, k, FIELD_BYTES.labelKey);
    bounded(`${field}[${echo(k)}]`, v, FIELD_BYTES.labelValue);
  }
  return map;
}
