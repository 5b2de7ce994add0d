/**
 * The telemetry start-up shared by the control and agent daemons: traces always on
 * in-process (exported when OTEL_EXPORTER_OTLP_ENDPOINT is set), Prometheus metrics only
 * when a port is given (config metrics.port, --metrics-port or BPFLEET_METRICS_PORT: see
 * common/config/), so two daemons on one machine never fight over a default port.
 */
import type { Logger } from './log.js';
import { startTelemetry, type Telemetry } from './otel.js';

export interface MetricsOptions {
  metricsPort?: number;
  metricsHost: string;
}

export async function startDaemonTelemetry(serviceName: string, instanceId: string, opts: MetricsOptions, log: Logger): Promise<Telemetry> {
  const telemetry = await startTelemetry({
    serviceName,
    serviceInstanceId: instanceId,
    metricsPort: opts.metricsPort ?? null,
    metricsHost: opts.metricsHost,
  });
  if (telemetry.metricsUrl) log.info({ url: telemetry.metricsUrl }, 'metrics endpoint ready');
  return telemetry;
}
