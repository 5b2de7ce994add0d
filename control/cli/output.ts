import { Option, type Command } from 'commander';
import YAML from 'yaml';
import { BpfleetError } from '../../common/errors.js';
import { parseDuration } from '../rollout/duration.js';
import { INSECURE_WARNING } from '../../common/tls.js';
import { Control } from './client.js';
import { inert } from './inert.js';
import { resolveConnection } from './connection.js';

export type Output = 'text' | 'json' | 'yaml';

/** `-o text|json|yaml`: every command takes it; json and yaml are the proto's canonical JSON. */
export const outputOption = () => new Option('-o, --output <format>', 'output format').choices(['text', 'json', 'yaml']).default('text');

/** Prints the result: JSON and YAML escape control characters themselves; text goes through inert(). */
export function print(format: Output, json: unknown, text: () => string): void {
  if (format === 'json') process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
  else if (format === 'yaml') process.stdout.write(YAML.stringify(json));
  else process.stdout.write(`${inert(text())}\n`);
}

/**
 * Runs `fn` with a client to the control plane named by the command's flags, env or config
 * context (see connection.ts), then closes it. Warns on stderr when the connection is insecure.
 */
export async function withControl<T>(cmd: Command, fn: (ctl: Control) => Promise<T>): Promise<T> {
  const { server, transport } = resolveConnection(cmd.optsWithGlobals());
  if (transport.mode === 'insecure') process.stderr.write(`bpfleet: WARNING: ${INSECURE_WARNING}\n`);
  const ctl = new Control(server, transport);
  try {
    return await fn(ctl);
  } finally {
    ctl.close();
  }
}

/** "90s", "5m", "1h", "500ms", a bare number of seconds, or 0 for no limit. */
export function parseTimeout(v: string): number {
  const ms = /^\d+$/.test(v) ? Number(v) * 1000 : parseDuration(v);
  if (ms === null) throw new BpfleetError('INVALID_ARGUMENT', 'USAGE', `--timeout "${v}": expected e.g. 90s, 10m or 0 for none`);
  return ms;
}
