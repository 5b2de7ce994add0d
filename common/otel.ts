/**
 * OpenTelemetry for every bpfleet process (control, agent, CLI).
 *
 * Tracing is always on inside the process, so log lines carry trace ids and context crosses
 * gRPC and NATS, but spans leave the process only when OTEL_EXPORTER_OTLP_ENDPOINT (or
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set. The exporter speaks OTLP http/protobuf: it is
 * the protocol OTLP defines as default (collectors listen for it on :4318), it goes over
 * node:http so exporting never runs through grpc-js and our own gRPC tracing, and it needs no
 * second gRPC channel per process.
 *
 * Metrics are pulled by Prometheus from an HTTP endpoint bound to loopback unless told
 * otherwise, like the agent and control APIs.
 *
 * gRPC and NATS context propagation is explicit (otel-grpc.ts, trace-nats.ts): see the
 * comment at the top of otel-grpc.ts for why auto-instrumentation is not used.
 */
import { createServer, type Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import {
  context,
  diag,
  DiagLogLevel,
  metrics,
  propagation,
  trace,
  type Meter,
  type Tracer,
} from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { defaultResource, detectResources, envDetector, hostDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { AggregationType, InstrumentType, MeterProvider } from '@opentelemetry/sdk-metrics';
import { BatchSpanProcessor, NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_INSTANCE_ID, ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { BpfleetError } from './errors.js';
import { createLogger } from './log.js';
import { INSTRUMENTATION_SCOPE } from './spans.js';

export interface TelemetryOptions {
  /** service.name: "bpfleet-control", "bpfleet-agent", "bpfleet-cli". */
  serviceName: string;
  /** service.instance.id; a random UUID when omitted (the OTel recommendation). */
  serviceInstanceId?: string;
  /**
   * Port of the Prometheus endpoint. undefined: 9464 (the exporter's registered default);
   * 0: a free port chosen by the kernel (read it back from `metricsUrl`); null: no metrics.
   */
  metricsPort?: number | null;
  /** Address the Prometheus endpoint binds to; loopback unless the operator says otherwise. */
  metricsHost?: string;
}

export interface Telemetry {
  tracer: Tracer;
  meter: Meter;
  /** "http://127.0.0.1:9464/metrics"; undefined when metrics are off. */
  metricsUrl?: string;
  /** Flushes pending spans, stops the metrics endpoint and releases the OTel globals. */
  shutdown(): Promise<void>;
}

/** Scope name of the tracer and meter handed out here. */
export { INSTRUMENTATION_SCOPE };

const DEFAULT_METRICS_PORT = 9464;
const DEFAULT_METRICS_HOST = '127.0.0.1';

/**
 * Bucket boundaries, from the semantic conventions for durations, that a view gives every
 * histogram whose unit is "s" (overriding any advice). The SDK default boundaries (0..10000)
 * suit milliseconds and would put every bpfleet duration into the first bucket.
 */
export const SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

let running = false;

/** What a running telemetry owns, released in one place whether start-up finished or not. */
interface Parts {
  tracerProvider?: NodeTracerProvider;
  meterProvider?: MeterProvider;
  metricsServer?: Server;
}

export async function startTelemetry(options: TelemetryOptions): Promise<Telemetry> {
  // The OTel API keeps one global provider of each kind and silently refuses a second one;
  // failing here beats a process whose spans go to a provider nobody exports from.
  if (running) {
    throw new BpfleetError('FAILED_PRECONDITION', 'TELEMETRY_RUNNING', 'startTelemetry called twice without shutdown()');
  }
  const endpoint = otlpTracesEndpoint();
  if (endpoint) checkOtlpProtocol();
  running = true;
  const parts: Parts = {};
  try {
    const metricsUrl = await start(options, endpoint, parts);
    let stopped: Promise<void> | undefined;
    return {
      tracer: trace.getTracer(INSTRUMENTATION_SCOPE),
      meter: metrics.getMeter(INSTRUMENTATION_SCOPE),
      metricsUrl,
      shutdown: () => (stopped ??= release(parts)),
    };
  } catch (err) {
    await release(parts);
    throw err;
  }
}

async function start(options: TelemetryOptions, endpoint: string | undefined, parts: Parts): Promise<string | undefined> {
  const otelLog = createLogger('otel');
  // Without a diag logger the SDK drops its own failures (an unreachable collector) silently.
  diag.setLogger({
    error: (message, ...args) => otelLog.error(diagFields(args), message),
    warn: (message, ...args) => otelLog.warn(diagFields(args), message),
    info: (message, ...args) => otelLog.info(diagFields(args), message),
    debug: (message, ...args) => otelLog.debug(diagFields(args), message),
    verbose: (message, ...args) => otelLog.trace(diagFields(args), message),
  }, { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true });

  // Operators' OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME win over what the code says.
  const resource = defaultResource()
    .merge(detectResources({ detectors: [hostDetector] }))
    .merge(resourceFromAttributes({
      [ATTR_SERVICE_NAME]: options.serviceName,
      [ATTR_SERVICE_INSTANCE_ID]: options.serviceInstanceId ?? randomUUID(),
    }))
    .merge(detectResources({ detectors: [envDetector] }));
  // host.id is read from disk; a scrape before it settles would serialize a partial resource.
  await resource.waitForAsyncAttributes?.();

  parts.tracerProvider = new NodeTracerProvider({
    resource,
    spanProcessors: endpoint ? [new BatchSpanProcessor(new OTLPTraceExporter())] : [],
  });
  parts.tracerProvider.register();

  const port = options.metricsPort === undefined ? DEFAULT_METRICS_PORT : options.metricsPort;
  if (port === null) return undefined;
  // The exporter's own server cannot listen on port 0 (it falls back to 9464), so it only
  // renders and our server listens: the kernel picks a free port with no probe-then-bind race.
  const prometheus = new PrometheusExporter({ preventServerStart: true });
  parts.meterProvider = new MeterProvider({
    resource,
    readers: [prometheus],
    views: [{
      instrumentType: InstrumentType.HISTOGRAM,
      instrumentUnit: 's',
      aggregation: { type: AggregationType.EXPLICIT_BUCKET_HISTOGRAM, options: { boundaries: SECONDS_BUCKETS } },
    }],
  });
  metrics.setGlobalMeterProvider(parts.meterProvider);
  const host = options.metricsHost ?? DEFAULT_METRICS_HOST;
  parts.metricsServer = createServer((req, res) => {
    if (req.method === 'GET' && new URL(req.url ?? '/', 'http://localhost').pathname === '/metrics') {
      prometheus.getMetricsRequestHandler(req, res);
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  const bound = await listen(parts.metricsServer, port, host);
  return `http://${host.includes(':') ? `[${host}]` : host}:${bound}/metrics`;
}

function diagFields(args: unknown[]): Record<string, unknown> {
  const err = args.find((a) => a instanceof Error);
  if (err) return { err };
  return args.length ? { args } : {};
}

function otlpTracesEndpoint(): string | undefined {
  return process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || process.env.OTEL_EXPORTER_OTLP_ENDPOINT || undefined;
}

function checkOtlpProtocol(): void {
  const protocol = process.env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL || process.env.OTEL_EXPORTER_OTLP_PROTOCOL;
  if (protocol && protocol !== 'http/protobuf') {
    throw new BpfleetError('INVALID_ARGUMENT', 'OTLP_PROTOCOL',
      `OTLP protocol "${protocol}" is not supported: bpfleet exports traces over http/protobuf (collector port 4318)`);
  }
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      // A scrape endpoint must not keep a finished process alive.
      server.unref();
      resolve((server.address() as AddressInfo).port);
    });
  });
}

async function release({ tracerProvider, meterProvider, metricsServer }: Parts): Promise<void> {
  try {
    await Promise.allSettled([
      tracerProvider?.shutdown(),
      meterProvider?.shutdown(),
      metricsServer && new Promise<void>((resolve) => {
        metricsServer.close(() => resolve());
        metricsServer.closeAllConnections();
      }),
    ]);
  } finally {
    trace.disable();
    metrics.disable();
    propagation.disable();
    context.disable();
    diag.disable();
    running = false;
  }
}
