/**
 * Child processes for tests, the local fleet and benchmarks: output captured to a log file
 * (kept after the run, for post-mortems), optionally echoed with a prefix, and every process
 * killed with its whole process group when it is stopped, when the test's cleanup runs, or
 * when this process is interrupted or exits.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import { claim, procRef, release } from './claims.js';
import { onExit } from './cleanup.js';

// Per user: a non-root developer cannot write into root's log dir.
const uid = process.getuid?.() ?? 0;
export const LOG_DIR = process.env.BPFLEET_LOG_DIR ?? join(tmpdir(), uid === 0 ? 'bpfleet-logs' : `bpfleet-logs-${uid}`);

export interface SpawnOptions {
  /** Log prefix and log file name. */
  name: string;
  command: string;
  args?: readonly string[];
  /** Added to (or, with `undefined` values, removed from) this process's environment. */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /**
   * Runs the process inside /run/netns/<netns> with `nsenter --net`. Not `ip netns exec`:
   * that remounts /sys and so hides the bpffs at /sys/fs/bpf, where the agent pins.
   */
  netns?: string;
  /** Echo output lines as "[name] line" on stderr. Default: BPFLEET_ECHO=1. */
  echo?: boolean;
  logDir?: string;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface StopOptions {
  signal?: NodeJS.Signals;
  /** Then SIGKILL. */
  graceMs?: number;
}

const TAIL_LINES = 1000;
const registry = new Set<ManagedProcess>();

export class ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  /** Resolves when the process has exited and its output is fully captured and logged. */
  readonly exited: Promise<ExitStatus>;
  private status: ExitStatus | undefined;
  private readonly tail: string[] = [];
  private readonly lineListeners = new Set<(line: string) => void>();
  private readonly log: WriteStream;
  private readonly unregisterExitHook: () => void;

  constructor(child: ChildProcess, opts: SpawnOptions) {
    if (child.pid === undefined) throw new Error(`spawn ${opts.name}: no pid`);
    this.name = opts.name;
    this.pid = child.pid;
    const logDir = opts.logDir ?? LOG_DIR;
    mkdirSync(logDir, { recursive: true });
    this.logFile = join(logDir, `${opts.name}.${this.pid}.log`);
    this.log = createWriteStream(this.logFile);
    const echo = opts.echo ?? process.env.BPFLEET_ECHO === '1';
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
        this.log.write(`${line}\n`);
        if (echo) process.stderr.write(`[${this.name}] ${line}\n`);
        this.tail.push(line);
        if (this.tail.length > TAIL_LINES) this.tail.shift();
        for (const l of this.lineListeners) l(line);
      });
    }

    const ref = procRef(this.pid);
    const claimId = ref && `${ref.pid}-${ref.start}`;
    if (ref && claimId) claim('proc', claimId, ref);
    this.unregisterExitHook = onExit(`kill ${this.name}`, () => {
      this.signal('SIGKILL');
      if (claimId) release('proc', claimId);
    });
    registry.add(this);

    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.status = { code, signal };
        // The leader is gone; a straggler it left in its group must not outlive it.
        this.signal('SIGKILL');
        registry.delete(this);
        this.unregisterExitHook();
        if (claimId) release('proc', claimId);
        // Resolve once the pipes are drained, so lines() is complete; a daemon that escaped
        // the group could hold them open, hence the bound.
        let finished = false;
        const bound = setTimeout(() => finish(), 1_000);
        const finish = (): void => {
          if (finished) return;
          finished = true;
          clearTimeout(bound);
          this.log.end(() => resolve({ code, signal }));
        };
        void closed.then(finish);
      });
    });
  }

  get running(): boolean {
    return this.status === undefined;
  }

  get exitStatus(): ExitStatus | undefined {
    return this.status;
  }

  /** The last output lines (both streams, in arrival order). */
  lines(): readonly string[] {
    return this.tail;
  }

  describe(lastLines = 20): string {
    const state = this.status ? `exited (code ${this.status.code}, signal ${this.status.signal})` : 'running';
    return `${this.name} (pid ${this.pid}) ${state}; log ${this.logFile}; last lines:\n${this.tail.slice(-lastLines).join('\n')}`;
  }

  /** Resolves with the first output line (seen so far or later) matching `re`. */
  waitForLine(re: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    for (const line of this.tail) {
      const m = line.match(re);
      if (m) return Promise.resolve(m);
    }
    return new Promise((resolve, reject) => {
      const done = (fn: () => void): void => {
        clearTimeout(timer);
        this.lineListeners.delete(listener);
        fn();
      };
      const listener = (line: string): void => {
        const m = line.match(re);
        if (m) done(() => resolve(m));
      };
      const timer = setTimeout(
        () => done(() => reject(new Error(`no line matching ${re} within ${timeoutMs} ms from ${this.describe()}`))),
        timeoutMs,
      );
      this.lineListeners.add(listener);
      void this.exited.then(() => done(() => reject(new Error(`no line matching ${re} before exit of ${this.describe()}`))));
    });
  }

  /** Signals the whole process group; a no-op when it is gone. */
  signal(sig: NodeJS.Signals): void {
    try {
      process.kill(-this.pid, sig);
    } catch {
      // ESRCH: the group is gone.
    }
  }

  async stop({ signal = 'SIGTERM', graceMs = 5_000 }: StopOptions = {}): Promise<ExitStatus> {
    if (this.status) return this.exited;
    this.signal(signal);
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  kill(): Promise<ExitStatus> {
    return this.stop({ signal: 'SIGKILL' });
  }
}

export function spawnManaged(opts: SpawnOptions): ManagedProcess {
  const [command, args] = opts.netns
    ? ['nsenter', [`--net=/run/netns/${opts.netns}`, '--', opts.command, ...(opts.args ?? [])]]
    : [opts.command, [...(opts.args ?? [])]];
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const child = spawn(command, args, {
    cwd: opts.cwd,
    env,
    // Its own process group, so stop() reaches everything it starts.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) {
    // The 'error' event (ENOENT, EACCES) follows; the caller gets it as a throw instead.
    child.once('error', () => {});
    throw new Error(`spawn ${opts.name}: cannot run ${command}`);
  }
  return new ManagedProcess(child, opts);
}

/**
 * Polls `probe` until it returns true. Fails early, with the process's last output, when the
 * process exits first.
 */
export async function waitUntilReady(proc: ManagedProcess, what: string, probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!proc.running) throw new Error(`${what} exited before it was ready: ${proc.describe()}`);
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what} not ready within ${timeoutMs} ms: ${proc.describe()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** GETs `url` (1 s timeout) and returns its JSON body, or undefined when it is not a 200. */
export async function getJson(url: string): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
  if (!res.ok) return undefined;
  return res.json();
}

export function runningProcesses(): ManagedProcess[] {
  return [...registry];
}

/** Stops every process started here that is still running. */
export async function stopAll(opts?: StopOptions): Promise<void> {
  await Promise.all([...registry].map((p) => p.stop(opts)));
}

export class CommandError extends Error {
  override readonly name = 'CommandError';
  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly code: number | string | null,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(`${[command, ...args].join(' ')} failed (${code}): ${stderr.trim() || stdout.trim()}`);
  }
}

export interface RunOptions {
  timeoutMs?: number;
  netns?: string;
}

/** Runs a short command to completion; throws CommandError (with its stderr) on failure. */
export function run(command: string, args: readonly string[], { timeoutMs = 30_000, netns }: RunOptions = {}): Promise<{ stdout: string; stderr: string }> {
  const [cmd, argv] = netns ? ['nsenter', [`--net=/run/netns/${netns}`, '--', command, ...args]] : [command, [...args]];
  return new Promise((resolve, reject) => {
    execFile(cmd, argv, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException & { code?: number | string }).code ?? null;
        reject(new CommandError(cmd, argv, code, stdout, stderr));
      } else {
        resolve({ stdout, stderr });
      }
    });
  });
}

/** For exit hooks, where nothing asynchronous runs; failures are ignored (best effort). */
export function runSyncQuiet(command: string, args: readonly string[]): void {
  spawnSync(command, args, { stdio: 'ignore', timeout: 10_000 });
}

// Debian puts nats-server, bpftool and ip in /usr/sbin, which a non-root PATH may lack.
const SBIN = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** Absolute path of an executable found on PATH (or in the sbin dirs), else undefined. */
export function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...SBIN];
  for (const dir of dirs) {
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return undefined;
}
