/**
 * Structured logs: one JSON object per line on stderr (stdout belongs to CLI output), with
 * the trace_id/span_id of the active span so a log line leads to its trace. On a terminal the
 * same records are printed as short human-readable lines instead.
 */
import { isSpanContextValid, trace } from '@opentelemetry/api';
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger } from 'pino';

export interface LoggerOptions {
  /** pino level name; default BPFLEET_LOG_LEVEL, else "info". */
  level?: string;
  /** Where lines go; default stderr, written synchronously so a crash loses nothing. */
  destination?: DestinationStream;
  /** Human-readable lines instead of JSON; default: true when logging to a stderr that is a TTY. */
  pretty?: boolean;
}

let root: Logger | undefined;

/** A logger whose lines carry `component` (agent, control, rollout, ...). */
export function createLogger(component: string, options?: LoggerOptions): Logger {
  const base = options ? makeRoot(options) : (root ??= makeRoot({}));
  return base.child({ component });
}

/**
 * Changes the level of every logger createLogger made and will make (children follow their
 * root's level): how a daemon applies a new logLevel on SIGHUP. Throws on an unknown level.
 */
export function setLogLevel(level: string): void {
  if (level !== 'silent' && !(level in pino.levels.values)) throw new Error(`log level "${level}" is not one of ${Object.keys(pino.levels.values).join(', ')}, silent`);
  root ??= makeRoot({ level });
  root.level = level;
}

function makeRoot(options: LoggerOptions): Logger {
  const requested = options.level ?? process.env.BPFLEET_LOG_LEVEL ?? 'info';
  const known = requested === 'silent' || requested in pino.levels.values;
  const pretty = options.pretty ?? (!options.destination && process.stderr.isTTY === true);
  const destination = options.destination ?? pino.destination({ dest: 2, sync: true });
  const logger = pino({
    level: known ? requested : 'info',
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    mixin: traceFields,
  }, pretty ? prettyStream(destination) : destination);
  if (!known) {
    logger.warn(`log level "${requested}" is not one of ${Object.keys(pino.levels.values).join(', ')}, silent; logging at info`);
  }
  return logger;
}

/** Field names and encodings of the OTel log data model's JSON form. */
function traceFields(): Record<string, string> {
  const sc = trace.getActiveSpan()?.spanContext();
  if (!sc || !isSpanContextValid(sc)) return {};
  return { trace_id: sc.traceId, span_id: sc.spanId, trace_flags: sc.traceFlags.toString(16).padStart(2, '0') };
}

const LEVEL_COLORS: Record<string, number> = { trace: 90, debug: 36, info: 32, warn: 33, error: 31, fatal: 35 };

// pino-pretty would bring 19 packages for what a dozen lines do here.
function prettyStream(destination: DestinationStream): DestinationStream {
  const color = !process.env.NO_COLOR;
  return {
    write(line: string) {
      const record = JSON.parse(line) as Record<string, unknown>;
      const { time, level, component, msg, err, pid: _pid, hostname: _hostname, trace_flags: _flags, trace_id, span_id, ...fields } = record;
      const label = String(level).toUpperCase().padEnd(5);
      const shown = color ? `\x1b[${LEVEL_COLORS[String(level)] ?? 0}m${label}\x1b[0m` : label;
      // Trace ids last: they are long and matter less to a reader than the call's own fields.
      const extra = Object.entries({ ...fields, trace_id, span_id })
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      let out = `${String(time).slice(11, 23)} ${shown} ${component ? `${String(component)}: ` : ''}${String(msg ?? '')}`;
      if (extra) out += ` ${extra}`;
      const stack = (err as { stack?: unknown } | undefined)?.stack;
      if (typeof stack === 'string') out += `\n  ${stack.replace(/\n/g, '\n  ')}`;
      destination.write(`${out}\n`);
    },
  };
}
