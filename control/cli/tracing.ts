/**
 * The CLI's part of a rollout's trace: one span per command ("bpfleet rollout create"), the
 * root of everything the control plane and the agents do for it, sent along by the gRPC
 * tracing interceptor. With --wait the span lasts until the rollout ends.
 *
 * Only when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set: the
 * SDK is imported only then, so no other invocation pays its start-up time. A TRACEPARENT
 * in the environment (the OTel convention for passing context to a child process, which CI
 * systems use) becomes the parent of the command span.
 */
import type { Interceptor } from '@grpc/grpc-js';
import type { Command } from 'commander';

/** Interceptors for the ControlService client: the tracing one while a command is traced. */
export const clientInterceptors: Interceptor[] = [];

export function tracingConfigured(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT);
}

/** "bpfleet rollout create": the command path without arguments (low cardinality). */
function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** Runs `run` (which parses argv with `program`) inside a command span, when tracing is on. */
export async function traceCommand(program: Command, run: () => Promise<void>): Promise<void> {
  if (!tracingConfigured()) return run();
  const [{ startTelemetry }, { tracingInterceptor }, { inSpan, contextOf }, { SpanKind, SpanStatusCode }] = await Promise.all([
    import('../../common/otel.js'),
    import('../../common/otel-grpc.js'),
    import('../../common/spans.js'),
    import('@opentelemetry/api'),
  ]);
  const telemetry = await startTelemetry({ serviceName: 'bpfleet-cli', metricsPort: null });
  clientInterceptors.push(tracingInterceptor);
  try {
    await inSpan(program.name(), { kind: SpanKind.INTERNAL, attributes: { 'process.executable.name': program.name(), 'process.pid': process.pid } }, async (span) => {
      program.hook('preAction', (_program, action) => {
        span.updateName(commandPath(action));
      });
      await run();
      const code = Number(process.exitCode ?? 0);
      span.setAttribute('process.exit.code', code);
      if (code !== 0) span.setStatus({ code: SpanStatusCode.ERROR, message: `exit code ${code}` });
    }, contextOf(process.env.TRACEPARENT));
  } finally {
    clientInterceptors.length = 0;
    await telemetry.shutdown();
  }
}
