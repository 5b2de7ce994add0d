/**
 * Bounded UDP traffic for tests and benchmarks. Every sender checks its target first, and
 * refuses anything outside loopback and the benchmark range we give our own namespaces:
 * this code must never be able to flood a real network.
 *
 * - startTraffic(): in-process, rate-limited (node:dgram), exact counts; for tests.
 * - startBlaster(): as fast as the machine goes, in child processes bounded by `timeout(1)`
 *   even if this process dies; for benchmarks.
 */
import dgram from 'node:dgram';
import { BlockList, isIPv4 } from 'node:net';
import { BpfleetError } from '../common/errors.js';
import { findExecutable, spawnManaged, type ManagedProcess } from './processes.js';

/** The only destinations traffic may go to. */
export const ALLOWED_TARGET_NETS = ['127.0.0.0/8', '198.18.0.0/15'] as const;

const allowed = new BlockList();
for (const net of ALLOWED_TARGET_NETS) {
  const [addr, len] = net.split('/') as [string, string];
  allowed.addSubnet(addr, Number(len), 'ipv4');
}

/** True for an IPv4 literal inside ALLOWED_TARGET_NETS; hostnames are never resolved. */
export function isAllowedTarget(target: string): boolean {
  return isIPv4(target) && allowed.check(target, 'ipv4');
}

export function assertAllowedTarget(target: string): void {
  if (!isAllowedTarget(target)) {
    throw new BpfleetError('PERMISSION_DENIED', 'FORBIDDEN_TARGET',
      `traffic target "${target}" refused: only IPv4 addresses in ${ALLOWED_TARGET_NETS.join(' and ')} are allowed`);
  }
}

const MAX_DURATION_MS = 10 * 60_000;
const MAX_PAYLOAD = 1472;
// Beyond this one event loop cannot keep the rate honest: use startBlaster().
const MAX_PPS = 100_000;
// Sends awaiting their callback; bounds memory when the kernel pushes back.
const MAX_IN_FLIGHT = 1024;
// After a stall (GC, busy loop) catch up at most this much, rather than bursting the backlog.
const MAX_CATCH_UP_MS = 20;

function checkCommon(target: string, port: number, durationMs: number, payloadBytes: number): void {
  assertAllowedTarget(target);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`port ${port}: must be 1..65535`);
  if (!(durationMs > 0 && durationMs <= MAX_DURATION_MS)) throw new Error(`durationMs ${durationMs}: must be in (0, ${MAX_DURATION_MS}]`);
  if (!Number.isInteger(payloadBytes) || payloadBytes < 0 || payloadBytes > MAX_PAYLOAD) {
    throw new Error(`payloadBytes ${payloadBytes}: must be 0..${MAX_PAYLOAD}`);
  }
}

export interface TrafficOptions {
  target: string;
  port: number;
  pps: number;
  /** Default 10 s; at most 10 min. */
  durationMs?: number;
  /** UDP payload size, default 64. */
  payloadBytes?: number;
}

export interface TrafficSource {
  /** Datagrams the kernel accepted so far. */
  sent(): number;
  /** Sends the kernel refused (e.g. ENOBUFS). */
  errors(): number;
  /** Resolves with sent() when the duration is over (or stop() was called) and the socket is closed. */
  readonly done: Promise<number>;
  stop(): Promise<number>;
}

/** Rate-limited UDP from this process (so from the root namespace). Throws before creating a socket if the target is not allowed. */
export function startTraffic({ target, port, pps, durationMs = 10_000, payloadBytes = 64 }: TrafficOptions): TrafficSource {
  checkCommon(target, port, durationMs, payloadBytes);
  if (!(pps > 0 && pps <= MAX_PPS)) throw new Error(`pps ${pps}: must be in (0, ${MAX_PPS}]; use startBlaster() for more`);

  const socket = dgram.createSocket('udp4');
  const payload = Buffer.alloc(payloadBytes, 0x62);
  let issued = 0;
  let sent = 0;
  let errors = 0;
  let inFlight = 0;
  let stopping = false;
  // Rate accounting starts here and moves forward when a stall's backlog is forgiven.
  let origin = performance.now();
  const endAt = origin + durationMs;
  let resolveDone!: (n: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));

  const finish = (): void => {
    if (inFlight > 0) return;
    socket.close(() => resolveDone(sent));
  };
  const onSent = (err: Error | null): void => {
    inFlight--;
    if (err) errors++;
    else sent++;
    if (stopping) finish();
  };
  const tick = (): void => {
    if (stopping) return;
    const now = performance.now();
    if (now >= endAt) {
      stopping = true;
      finish();
      return;
    }
    let due = Math.floor(((now - origin) * pps) / 1000) - issued;
    const maxBurst = Math.max(1, Math.ceil((MAX_CATCH_UP_MS * pps) / 1000));
    if (due > maxBurst) {
      origin += ((due - maxBurst) * 1000) / pps;
      due = maxBurst;
    }
    for (; due > 0 && inFlight < MAX_IN_FLIGHT; due--) {
      issued++;
      inFlight++;
      socket.send(payload, port, target, onSent);
    }
    setTimeout(tick, 1);
  };
  socket.on('error', () => {
    errors++;
  });
  setImmediate(tick);

  return {
    sent: () => sent,
    errors: () => errors,
    done,
    stop: () => {
      if (!stopping) {
        stopping = true;
        finish();
      }
      return done;
    },
  };
}

/**
 * Measured on a 2-vCPU VM, root ns to a veth in a namespace, 64-byte payloads, one sender:
 * python3 sendto() 190-215 kpps, node:dgram 140-200 kpps, hping3 --flood 125-175 kpps (a second
 * sender adds nothing on 2 cores). iperf3 -u reaches 170-270 kpps but needs a server and a TCP
 * control connection to the target, which a module that drops traffic cuts; so it is not
 * offered here.
 */
export type BlasterTool = 'python3' | 'node';

export interface BlastOptions {
  target: string;
  port: number;
  durationMs: number;
  /** Default: python3 when installed (fastest), else node. */
  tool?: BlasterTool;
  /** Parallel sender processes, default 1 (more only helps with spare cores). */
  workers?: number;
  payloadBytes?: number;
}

export interface BlastResult {
  tool: BlasterTool;
  workers: number;
  /** Datagrams the senders handed to the kernel. */
  sent: number;
  /** Sum over workers of each one's sent / own sending time (process start-up excluded). */
  pps: number;
}

export interface Blaster {
  readonly done: Promise<BlastResult>;
  /** Ends the senders early; resolves with what they sent. */
  stop(): Promise<BlastResult>;
}

// Each sender stops after its duration or on SIGINT and then prints {"sent":N,"ms":M}.
const PYTHON_SENDER = `
import json, signal, socket, sys, time
target, port, size, ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
stop = []
signal.signal(signal.SIGINT, lambda *_: stop.append(1))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload, dst, n = b"b" * size, (target, port), 0
start = time.monotonic()
end = start + ms / 1000
while not stop and time.monotonic() < end:
    for _ in range(512):
        try:
            s.sendto(payload, dst)
            n += 1
        except OSError:
            pass
print(json.dumps({"sent": n, "ms": (time.monotonic() - start) * 1000}), flush=True)
`;

const NODE_SENDER = `
const dgram = require('node:dgram');
const [target, port, size, ms] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
const payload = Buffer.alloc(Number(size), 0x62);
const start = performance.now();
const end = start + Number(ms);
let n = 0, inFlight = 0, stop = false;
const report = () => {
  if (inFlight > 0) return;
  console.log(JSON.stringify({ sent: n, ms: performance.now() - start }));
  process.exit(0);
};
process.on('SIGINT', () => { stop = true; report(); });
const cb = (err) => { inFlight--; if (!err) n++; if (stop) report(); };
const pump = () => {
  if (stop) return;
  for (let i = 0; i < 256 && inFlight < 512; i++) { inFlight++; s.send(payload, Number(port), target, cb); }
  if (performance.now() >= end) { stop = true; report(); } else setImmediate(pump);
};
pump();
`;

function senderCommand(tool: BlasterTool, target: string, port: number, payloadBytes: number, durationMs: number): [string, string[]] {
  const args = [target, String(port), String(payloadBytes), String(durationMs)];
  if (tool === 'node') return [process.execPath, ['-e', NODE_SENDER, ...args]];
  const python = findExecutable('python3');
  if (!python) throw new Error('blaster: python3 not found (apt-get install python3, or use tool: "node")');
  return [python, ['-c', PYTHON_SENDER, ...args]];
}

function senderReport(proc: ManagedProcess): { sent: number; ms: number } {
  for (const line of proc.lines()) {
    if (!line.startsWith('{')) continue;
    const r = JSON.parse(line) as { sent?: unknown; ms?: unknown };
    if (typeof r.sent === 'number' && typeof r.ms === 'number') return { sent: r.sent, ms: r.ms };
  }
  throw new Error(`blaster: no report in the sender's output: ${proc.describe()}`);
}

/**
 * Floods `target`:`port` with UDP from the root namespace for `durationMs`, from `workers`
 * child processes. Throws before starting anything if the target is not allowed.
 */
export function startBlaster({ target, port, durationMs, tool, workers = 1, payloadBytes = 64 }: BlastOptions): Blaster {
  checkCommon(target, port, durationMs, payloadBytes);
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new Error(`workers ${workers}: must be 1..64`);
  const chosen: BlasterTool = tool ?? (findExecutable('python3') ? 'python3' : 'node');
  const [cmd, args] = senderCommand(chosen, target, port, payloadBytes, durationMs);
  const timeoutBin = findExecutable('timeout');
  if (!timeoutBin) throw new Error('blaster: timeout(1) not found (coreutils)');

  // timeout(1) bounds each sender even if this process is killed: SIGINT a second after the
  // sender should have ended by itself, SIGKILL 2 s after that.
  const limitSec = ((durationMs + 1_000) / 1000).toFixed(3);
  const procs = Array.from({ length: workers }, (_, i) =>
    spawnManaged({
      name: `blaster-${chosen}-${i}`,
      command: timeoutBin,
      args: ['--signal=INT', '--kill-after=2', limitSec, cmd, ...args],
    }),
  );

  const done = Promise.all(procs.map((p) => p.exited)).then(() => {
    const reports = procs.map(senderReport);
    return {
      tool: chosen,
      workers,
      sent: reports.reduce((sum, r) => sum + r.sent, 0),
      pps: Math.round(reports.reduce((sum, r) => sum + (r.ms > 0 ? (r.sent * 1000) / r.ms : 0), 0)),
    };
  });
  return {
    done,
    stop: () => {
      procs.forEach((p) => p.signal('SIGINT'));
      return done;
    },
  };
}
