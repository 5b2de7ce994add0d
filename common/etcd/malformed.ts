/**
 * What every etcd reader does with a value it cannot use (not JSON, JSON of the wrong
 * shape, a key that does not name anything): skip it, log it with its key, count it, and
 * keep serving. One bad value written by hand or by a bug must not stop a daemon.
 */
import { BpfleetError } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import { instrumentsPerProvider } from '../meters.js';
import { ROOT } from '../keys.js';

const storeMetrics = instrumentsPerProvider((meter) => ({
  malformed: meter.createCounter('bpfleet.store.malformed', {
    unit: '{value}',
    description: 'etcd values skipped because they could not be decoded, by key prefix (/bpfleet/<kind>/)',
  }),
}));

let fallback: Logger | undefined;

/** The key space a key belongs to, e.g. /bpfleet/hosts/ for /bpfleet/hosts/h1: a metric attribute of bounded cardinality. */
export function keySpace(key: string): string {
  if (!key.startsWith(ROOT)) return 'other';
  const end = key.indexOf('/', ROOT.length);
  return end < 0 ? 'other' : key.slice(0, end + 1);
}

/** Logs and counts a skipped value (`err` says why); the key is logged whole, the value never. */
export function reportMalformed(key: string, err: unknown, log?: Logger): void {
  storeMetrics().malformed.add(1, { prefix: keySpace(key) });
  (log ?? (fallback ??= createLogger('store'))).warn({ key: key.slice(0, 512), err: String(err instanceof Error ? err.message : err).slice(0, 512) }, 'skipped a malformed etcd value');
}

/** The error a decoder throws for a value it cannot use. */
export function malformed(why: string): BpfleetError {
  return new BpfleetError('INTERNAL', 'MALFORMED_VALUE', why);
}

/**
 * `decode(text)`, or null after reporting the value as malformed (see reportMalformed).
 * For readers of a single key that treat a bad value as an absent one.
 */
export function decodeOrSkip<T>(key: string, text: string, decode: (text: string, key: string) => T, log?: Logger): T | null {
  try {
    return decode(text, key);
  } catch (err) {
    reportMalformed(key, err, log);
    return null;
  }
}
