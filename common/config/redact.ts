import { SECRET_KEYS } from './schema.js';

export const REDACTED = '<redacted>';

/** A deep copy of `value` with every SECRET_KEYS field that is set replaced by "<redacted>". */
export function redact<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v) => redact(v)) as T;
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, SECRET_KEYS.has(k) && v !== undefined ? REDACTED : redact(v)])) as T;
}
