import type { IntentStore } from '../common/etcd/intents.js';
import { BpfleetError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { AttachmentStatus, type Intent } from '../proto/gen/bpfleet/v1/agent.js';
import type { Reconciler } from './reconciler.js';
import { tracedApply } from './tracing.js';

/**
 * Level-triggered convergence: the agent reads its intents from etcd at start and on
 * every change, so an Apply RPC that never arrived still takes effect. Apply is
 * idempotent, so the RPC and the watch racing each other is harmless.
 */
export class IntentWatch {
  private readonly stopping = new AbortController();
  private following: Promise<void> | null = null;

  constructor(
    private readonly intents: IntentStore,
    private readonly reconciler: Reconciler,
    private readonly log: Logger,
  ) {}

  /** Reads the host's intents and converges to each, watching for changes meanwhile; resolves when all were tried. */
  async start(): Promise<void> {
    const listed = await this.intents.list(this.reconciler.host, this.log);
    this.following = this.follow(listed.revision + 1);
    await this.convergeAll(listed.items.values());
  }

  private async follow(fromRevision: number): Promise<void> {
    const changes = this.intents.watch(this.reconciler.host, { signal: this.stopping.signal, fromRevision, log: this.log });
    for await (const change of changes) {
      if (change.kind === 'put') void this.converge(change.value);
      else if (change.kind === 'reset') {
        this.log.warn({ err: String(change.cause) }, 'intent watch failed; re-reading intents');
        void this.convergeAll(change.items.values());
      }
    }
  }

  private async convergeAll(intents: Iterable<Intent>): Promise<void> {
    for (const intent of intents) await this.converge(intent);
  }

  private converge(intent: Intent): Promise<void> {
    return convergeTo(this.reconciler, intent, this.log);
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await this.following;
  }
}

/** Applies an intent read from etcd unless the host already runs it; failures are logged. */
export async function convergeTo(reconciler: Reconciler, intent: Intent, log: Logger): Promise<void> {
  const running = reconciler.state().attachments.find((a) => a.attachment === intent.attachment);
  // An UNVERIFIED program (adopted, failing the signature policy) satisfies nothing: the
  // apply goes through the policy check and its refusal is logged.
  if ((running?.module?.digest ?? '') === (intent.module?.digest ?? '') && running?.generation === intent.generation &&
    running?.status !== AttachmentStatus.ATTACHMENT_STATUS_UNVERIFIED) return;
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
