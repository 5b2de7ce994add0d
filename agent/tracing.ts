/**
 * Spans and metrics around an agent's apply, added by wrapping what the reconciler is given
 * (its driver, module source and state sink) so the reconciler itself stays free of them.
 *
 * One apply, as it shows in the rollout's trace:
 *
 *   bpfleet.v1.AgentService/Apply (SERVER, from the controller)  or  intent.converge (watch)
 *     module.resolve        registry lookup in etcd
 *     artifact.fetch        local cache or the NATS object store; the digest is checked here
 *     dataplane.install     compare-and-swap on the attachment
 *       bpf.load            open + load: the verifier runs here       (in the driver)
 *       bpf.swap|bpf.attach bpf_link_update with BPF_F_REPLACE        (in the driver)
 *     state.report          observed state to etcd
 *
 * The install span's context is kept per attachment: telemetry reports about it carry that
 * context in their NATS headers, so the controller's analysis links a verdict to the
 * installs whose programs produced the numbers (see telemetry-publisher.ts).
 */
import { ROOT_CONTEXT, SpanKind, trace, type Attributes, type Context, type SpanContext } from '@opentelemetry/api';
import { formatAttachment, type Attachment } from '../common/attachment.js';
import {
  ATTR_APPLY_RESULT,
  ATTR_APPLY_TRIGGER,
  ATTR_ATTACHMENT,
  ATTR_DIGEST,
  ATTR_EXPECTED_DIGEST,
  ATTR_GENERATION,
  ATTR_HOOK,
  ATTR_HOST,
  ATTR_LEADER_EPOCH,
  ATTR_LINK_ID,
  ATTR_MODULE,
  ATTR_PROG_ID,
  ATTR_ROLLOUT_ID,
} from '../common/otel-attributes.js';
import { childSpan, contextOf, errorType, inSpan } from '../common/spans.js';
import type { GetStateResponse, Intent } from '../proto/gen/bpfleet/v1/agent.js';
import type { ArtifactCache } from './artifact-cache.js';
import type { AttachmentHealth, DataplaneDriver, InstallResult, ModuleArtifact, ProgramStats, RunningModule } from './dataplane/driver.js';
import { agentMetrics } from './metrics.js';
import type { ApplyResult, ModuleSource, StateSink } from './reconciler.js';

export function intentAttributes(host: string, intent: Intent): Attributes {
  const ref = intent.module;
  return {
    [ATTR_HOST]: host,
    [ATTR_ATTACHMENT]: intent.attachment,
    [ATTR_MODULE]: ref?.digest ? `${ref.name}@${ref.version}` : '(none)',
    [ATTR_DIGEST]: ref?.digest ?? '',
    [ATTR_EXPECTED_DIGEST]: intent.expectedDigest,
    [ATTR_ROLLOUT_ID]: intent.rolloutId,
    [ATTR_GENERATION]: intent.generation,
    [ATTR_LEADER_EPOCH]: intent.leaderEpoch,
  };
}

/**
 * Runs one apply of `intent` and records it: on the active span (the Apply server span)
 * when the controller called, in a new span parented by the intent's traceparent when the
 * agent's etcd watch saw the intent first.
 */
export function tracedApply(trigger: 'rpc' | 'watch', host: string, intent: Intent, apply: () => Promise<ApplyResult>): Promise<ApplyResult> {
  const attributes = { ...intentAttributes(host, intent), [ATTR_APPLY_TRIGGER]: trigger };
  const run = async (): Promise<ApplyResult> => {
    const span = trace.getActiveSpan();
    span?.setAttributes(attributes);
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    try {
      const result = await apply();
      const outcome = result.changed ? 'changed' : 'unchanged';
      span?.setAttributes({ [ATTR_APPLY_RESULT]: outcome, [ATTR_PROG_ID]: result.state.progId, [ATTR_LINK_ID]: result.state.linkId });
      agentMetrics().applyDuration.record(seconds(), { [ATTR_APPLY_TRIGGER]: trigger, [ATTR_APPLY_RESULT]: outcome });
      return result;
    } catch (err) {
      span?.setAttribute(ATTR_APPLY_RESULT, 'failed');
      agentMetrics().applyDuration.record(seconds(), { [ATTR_APPLY_TRIGGER]: trigger, [ATTR_APPLY_RESULT]: 'failed', 'error.type': errorType(err) });
      throw err;
    }
  };
  if (trigger === 'rpc') return run();
  return inSpan('intent.converge', { kind: SpanKind.CONSUMER }, run, contextOf(intent.traceparent));
}

/** The module source, with a span per registry lookup and artifact fetch. */
export function tracedSource(source: ModuleSource, cache?: Pick<ArtifactCache, 'hits'>): ModuleSource {
  return {
    module: (name, version) => childSpan('module.resolve', { [ATTR_MODULE]: `${name}@${version}` }, () => source.module(name, version)),
    object: (digest) => childSpan('artifact.fetch', { [ATTR_DIGEST]: digest }, async (span) => {
      const hitsBefore = cache?.hits;
      const bytes = await source.object(digest);
      span?.setAttributes({ 'bpfleet.artifact.bytes': bytes.length });
      if (cache && hitsBefore !== undefined) span?.setAttribute('bpfleet.artifact.cache_hit', cache.hits > hitsBefore);
      return bytes;
    }),
  };
}

export function tracedSink(sink: StateSink): StateSink {
  return {
    report: (state: GetStateResponse) => childSpan('state.report', { [ATTR_HOST]: state.host }, () => sink.report(state)),
  };
}

/**
 * A DataplaneDriver with a span and metrics per install and removal, which remembers the
 * install span of each attachment for the telemetry that follows it.
 */
export class TracedDriver implements DataplaneDriver {
  readonly kind: DataplaneDriver['kind'];
  private readonly installs = new Map<string, { span: SpanContext; at: number }>();

  constructor(private readonly inner: DataplaneDriver) {
    this.kind = inner.kind;
  }

  capabilities(): string[] {
    return this.inner.capabilities();
  }

  observe(): Promise<RunningModule[]> {
    return this.inner.observe();
  }

  install(attachment: Attachment, artifact: ModuleArtifact, expectedDigest: string | null): Promise<InstallResult> {
    const key = formatAttachment(attachment);
    const { name, version } = artifact.manifest;
    return childSpan('dataplane.install', {
      [ATTR_ATTACHMENT]: key, [ATTR_MODULE]: `${name}@${version}`, [ATTR_DIGEST]: artifact.digest,
      [ATTR_EXPECTED_DIGEST]: expectedDigest ?? '',
    }, async (span) => {
      const hook = { [ATTR_HOOK]: attachment.hook };
      let result: InstallResult;
      try {
        result = await this.inner.install(attachment, artifact, expectedDigest);
      } catch (err) {
        agentMetrics().swapFailures.add(1, { ...hook, 'error.type': errorType(err) });
        throw err;
      }
      span?.setAttributes({ 'bpfleet.install.changed': result.changed, [ATTR_PROG_ID]: result.running.progId, [ATTR_LINK_ID]: result.running.linkId });
      if (result.changed) {
        agentMetrics().loadDuration.record(result.timing.loadMs / 1000, hook);
        agentMetrics().swapDuration.record(result.timing.swapMs / 1000, { ...hook, 'bpfleet.swap.kind': expectedDigest ? 'replace' : 'attach' });
        if (span) this.installs.set(key, { span: span.spanContext(), at: Date.now() });
      }
      return result;
    });
  }

  verify(attachment: Attachment, artifact: ModuleArtifact): Promise<{ loadMs: number }> {
    const { name, version } = artifact.manifest;
    return childSpan('dataplane.verify', {
      [ATTR_ATTACHMENT]: formatAttachment(attachment), [ATTR_MODULE]: `${name}@${version}`, [ATTR_DIGEST]: artifact.digest,
    }, () => this.inner.verify(attachment, artifact));
  }

  check(): Promise<AttachmentHealth[]> {
    return this.inner.check();
  }

  stats(attachment: Attachment): Promise<ProgramStats | null> {
    return this.inner.stats(attachment);
  }

  remove(attachment: Attachment): Promise<void> {
    const key = formatAttachment(attachment);
    return childSpan('dataplane.remove', { [ATTR_ATTACHMENT]: key }, async () => {
      await this.inner.remove(attachment);
      this.installs.delete(key);
    });
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  /**
   * The context a telemetry report about `attachments` carries: the most recent traced
   * install among them. ROOT (no trace header) when none was traced by this process.
   */
  telemetryContext(attachments: readonly string[]): Context {
    let newest: { span: SpanContext; at: number } | undefined;
    for (const a of attachments) {
      const install = this.installs.get(a);
      if (install && (!newest || install.at >= newest.at)) newest = install;
    }
    return newest ? trace.setSpanContext(ROOT_CONTEXT, newest.span) : ROOT_CONTEXT;
  }
}
