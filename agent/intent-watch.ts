import type { Etcd3, Watcher } from 'etcd3';
import { BpfleetError } from '../common/errors.js';
import { keys } from '../common/keys.js';
import type { Logger } from '../common/log.js';
import { Intent } from '../proto/gen/bpfleet/v1/agent.js';
import type { Reconciler } from './reconciler.js';
import { tracedApply } from './tracing.js';

/**
 * Level-triggered convergence: the agent reads its intents from etcd at start and on
 * every change, so an Apply RPC that never arrived still takes effect. Apply is
 * idempotent, so the RPC and the watch racing each other is harmless.
 */
export class IntentWatch {
  private watcher: Watcher | null = null;

  constructor(
    private readonly etcd: Etcd3,
    private readonly reconciler: Reconciler,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const prefix = keys.intentsOf(this.reconciler.host);
    const watcher = await this.etcd.watch().prefix(prefix).create();
    this.watcher = watcher;
    watcher.on('put', (kv) => void this.converge(Intent.fromJSON(JSON.parse(kv.value.toString()))));
    watcher.on('error', (err) => {
      this.log.warn({ err: String(err) }, 'intent watch failed; re-reading intents');
      void watcher.cancel();
      setTimeout(() => void this.start().catch((e) => this.log.error({ err: e }, 'intent watch restart failed')), 1000).unref();
    });
    const values = await this.etcd.getAll().prefix(prefix).strings();
    for (const v of Object.values(values)) await this.converge(Intent.fromJSON(JSON.parse(v)));
  }

  private converge(intent: Intent): Promise<void> {
    return convergeTo(this.reconciler, intent, this.log);
  }

  async stop(): Promise<void> {
    await this.watcher?.cancel();
  }
}

/** Applies an intent read from etcd unless the host already runs it; failures are logged. */
export async function convergeTo(reconciler: Reconciler, intent: Intent, log: Logger): Promise<void> {
  const running = reconciler.state().attachments.find((a) => a.attachment === intent.attachment);
  if ((running?.module?.digest ?? '') === (intent.module?.digest ?? '') && running?.generation === intent.generation) return;
  try {
    await tracedApply('watch', reconciler.host, intent, async () => {
      const r = await reconciler.apply(intent);
      if (r.changed) log.info({ attachment: intent.attachment, generation: intent.generation }, 'converged to intent from etcd');
      return r;
    });
  } catch (err) {
    const e = err instanceof BpfleetError ? `${err.reason}: ${err.message}` : String(err);
    log.warn({ attachment: intent.attachment, generation: intent.generation }, `intent not applied: ${e}`);
  }
}
