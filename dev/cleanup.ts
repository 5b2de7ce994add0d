/**
 * Two ways to undo what tests and the fleet launcher set up:
 *
 * - CleanupStack: the normal path. Steps run in reverse order, a failing or hanging step does
 *   not stop the ones after it, and every failure is reported.
 * - onExit(): the last resort when the process is interrupted (SIGINT, SIGTERM, SIGHUP) or
 *   exits without running its stack. These hooks must be synchronous: on 'exit' nothing
 *   asynchronous runs any more.
 */

type Step = { label: string; fn: () => unknown };

export interface RunAllOptions {
  /** A step that takes longer is reported as failed and the next one starts. */
  stepTimeoutMs?: number;
}

export class CleanupStack {
  private steps: Step[] = [];

  defer(fn: () => unknown, label = fn.name || 'cleanup'): void {
    this.steps.push({ label, fn });
  }

  get size(): number {
    return this.steps.length;
  }

  /** Runs every step, newest first; throws an AggregateError naming each step that failed. */
  async runAll({ stepTimeoutMs = 30_000 }: RunAllOptions = {}): Promise<void> {
    const failures: Error[] = [];
    while (this.steps.length > 0) {
      const step = this.steps.pop()!;
      try {
        await withTimeout(Promise.resolve().then(step.fn), stepTimeoutMs, step.label);
      } catch (err) {
        const e = new Error(`cleanup "${step.label}": ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        process.stderr.write(`${e.message}\n`);
        failures.push(e);
      }
    }
    if (failures.length > 0) {
      throw new AggregateError(failures, `${failures.length} cleanup step(s) failed: ${failures.map((f) => f.message).join('; ')}`);
    }
  }
}

async function withTimeout<T>(p: Promise<T>, ms: number, label: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${label} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const exitHooks = new Map<number, Step>();
let nextHookId = 0;
let installed = false;

/** Registers a synchronous last-resort cleanup; call the returned function once it is done normally. */
export function onExit(label: string, fn: () => void): () => void {
  install();
  const id = nextHookId++;
  exitHooks.set(id, { label, fn });
  return () => {
    exitHooks.delete(id);
  };
}

function runExitHooks(): void {
  const hooks = [...exitHooks.values()].reverse();
  exitHooks.clear();
  for (const h of hooks) {
    try {
      h.fn();
    } catch (err) {
      process.stderr.write(`exit cleanup "${h.label}": ${err instanceof Error ? err.message : String(err)}\n`);
    }
  }
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', runExitHooks);
  for (const sig of SIGNALS) {
    const handler = (): void => {
      // Someone else (the launcher, the test runner) also listens: they decide how to shut down,
      // maybe gracefully, and the 'exit' hook still catches what they leave.
      if (process.listenerCount(sig) > 1) return;
      runExitHooks();
      // Die of the signal, as the process would have without this handler.
      process.off(sig, handler);
      process.kill(process.pid, sig);
    };
    process.on(sig, handler);
  }
}
