/**
 * The telemetry flags and start-up shared by the control and agent daemons: traces always on
 * in-process (exported when OTEL_EXPORTER_OTLP_ENDPOINT is set), Prometheus metrics only
 * when a port is given, so two daemons on one machine never fight over a default port.
 */
import { InvalidArgumentError, type Command } from 'commander';
import type { Logger } from './log.js';
import { startTelemetry, type Telemetry } from './otel.js';

export interface MetricsOptions {
  metricsPort?: number;
  metricsHost: string;
}

function port(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535) throw new InvalidArgumentError(`"${value}" is not a TCP port (0-65535; 0 picks a free one)`);
  return n;
}

export function addMetricsOptions(command: Command): Command {
  return command
    .option('--metrics-port <port>', 'serve Prometheus metrics at http://<metrics-host>:<port>/metrics (0: any free port); off unless given (env BPFLEET_METRICS_PORT)', port)
    .option('--metrics-host <addr>', 'address the metrics endpoint binds to (env BPFLEET_METRICS_HOST)', process.env.BPFLEET_METRICS_HOST ?? '127.0.0.1');
}

export async function startDaemonTelemetry(serviceName: string, instanceId: string, opts: MetricsOptions, log: Logger): Promise<Telemetry> {
  const telemetry = await startTelemetry({
    serviceName,
    serviceInstanceId: instanceId,
    metricsPort: opts.metricsPort ?? (process.env.BPFLEET_METRICS_PORT ? port(process.env.BPFLEET_METRICS_PORT) : null),
    metricsHost: opts.metricsHost,
  });
  if (telemetry.metricsUrl) log.info({ url: telemetry.metricsUrl }, 'metrics endpoint ready');
  return telemetry;
}
