/**
 * Tracing set-ups a benchmark can run the same work under, to show what observability costs:
 *   off       no OTel provider: every span is the API's no-op (the floor);
 *   recorded  startTelemetry as the daemons run by default: spans recorded in-process (for
 *             log trace ids and propagation) and metrics kept, nothing exported;
 *   exported  as above, plus every span exported over OTLP/HTTP to a receiver on loopback.
 * The caller's gRPC client gets the tracing interceptor in the last two, so every call
 * starts a sampled trace that reaches the server, as the controller's applies do.
 */
import type { Interceptor } from '@grpc/grpc-js';
import { startTelemetry } from '../common/otel.js';
import { tracingInterceptor } from '../common/otel-grpc.js';
import { startOtlpReceiver } from '../e2e/support/otlp-receiver.js';

export const TRACING_MODES = ['off', 'recorded', 'exported'] as const;
export type TracingMode = (typeof TRACING_MODES)[number];

export interface TracingRun {
  interceptors: Interceptor[];
  /** Flushes and stops; says how many spans reached the receiver (exported mode). */
  stop(): Promise<{ spansExported: number }>;
}

export async function startTracingMode(mode: TracingMode): Promise<TracingRun> {
  if (mode === 'off') return { interceptors: [], stop: async () => ({ spansExported: 0 }) };
  const receiver = mode === 'exported' ? await startOtlpReceiver() : null;
  const saved = process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (receiver) process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.endpoint;
  else delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  try {
    const telemetry = await startTelemetry({ serviceName: 'bpfleet-bench', metricsPort: 0 }).catch(async (err: unknown) => {
      await receiver?.close();
      throw err;
    });
    return {
      interceptors: [tracingInterceptor],
      async stop() {
        await telemetry.shutdown();
        const spansExported = receiver?.spans.length ?? 0;
        await receiver?.close();
        return { spansExported };
      },
    };
  } finally {
    if (saved === undefined) delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
    else process.env.OTEL_EXPORTER_OTLP_ENDPOINT = saved;
  }
}
