/**
 * Listening TCP sockets as the kernel reports them (`ss -ltnp`), in the root namespace or
 * inside a named one: what a test checks to prove where a fleet's daemons listen.
 */
import { run } from '../../dev/processes.js';

export interface Listener {
  /** The local address without the port: "198.18.1.1", "127.0.0.1", "*", "::1". */
  address: string;
  port: number;
  /** Pids of the processes that hold the socket. */
  pids: number[];
}

/** Parses one line of `ss -ltnpH` output ("LISTEN 0 4096 198.18.1.1:2379 0.0.0.0:* users:((...))"). */
export function parseListener(line: string): Listener | undefined {
  const cols = line.trim().split(/\s+/);
  const local = cols[3];
  if (!local) return undefined;
  const sep = local.lastIndexOf(':');
  const address = local.slice(0, sep).replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, '');
  const pids = [...line.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
  return { address, port: Number(local.slice(sep + 1)), pids };
}

/** Every listening TCP socket in `netns` (default: this process's namespace). */
export async function tcpListeners(netns?: string): Promise<Listener[]> {
  const { stdout } = await run('ss', ['-ltnpH'], { netns });
  return stdout.split('\n').flatMap((l) => parseListener(l) ?? []);
}

/** True for an address that is loopback or a wildcard (which includes loopback). */
export function reachesLoopback(address: string): boolean {
  return /^127\./.test(address) || ['*', '0.0.0.0', '::', '::1', '::ffff:127.0.0.1'].includes(address);
}
