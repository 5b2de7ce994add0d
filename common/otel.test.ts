import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { trace, type SpanContext } from '@opentelemetry/api';
import {
  AgentServiceClient,
  AgentServiceService,
  type AgentServiceServer,
  type GetStateResponse,
} from '../proto/gen/bpfleet/v1/agent.js';
import { ControlServiceClient, ControlServiceService, type ControlServiceServer } from '../proto/gen/bpfleet/v1/control.js';
import { Rollout } from '../proto/gen/bpfleet/v1/rollout.js';
import { BpfleetError, toServiceError } from './errors.js';
import { startTelemetry, SECONDS_BUCKETS } from './otel.js';
import { tracingInterceptor, withServerSpan } from './otel-grpc.js';
import { scrape } from '../e2e/support/prometheus.js';
import { SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_CODE_ERROR, startOtlpReceiver, type OtlpReceiver } from '../e2e/support/otlp-receiver.js';

async function listenOn(server: Server, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

async function otlpReceiver(t: TestContext): Promise<OtlpReceiver> {
  const r = await startOtlpReceiver();
  t.after(() => r.close());
  return r;
}

/** Sets env vars for one test; `undefined` unsets. Restored after the test, pass or fail. */
function withEnv(t: TestContext, vars: Record<string, string | undefined>): void {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const apply = (v: Record<string, string | undefined>) => {
    for (const [k, val] of Object.entries(v)) {
      if (val === undefined) delete process.env[k];
      else process.env[k] = val;
    }
  };
  apply(vars);
  t.after(() => apply(saved));
}

async function startAgentServer(t: TestContext, impl: Pick<AgentServiceServer, 'apply' | 'getState'>): Promise<number> {
  const server = new grpc.Server();
  server.addService(AgentServiceService, impl);
  t.after(() => server.forceShutdown());
  return new Promise((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port)));
  });
}

// ---- tests ----

test('a gRPC call carries the trace from client span to server span, exported over OTLP', async (t) => {
  const receiver = await otlpReceiver(t);
  withEnv(t, { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: undefined, OTEL_EXPORTER_OTLP_PROTOCOL: undefined, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: undefined, OTEL_SERVICE_NAME: undefined, OTEL_RESOURCE_ATTRIBUTES: undefined });
  const telemetry = await startTelemetry({ serviceName: 'bpfleet-test', metricsPort: null });
  t.after(() => telemetry.shutdown());

  let inHandler: SpanContext | undefined;
  const port = await startAgentServer(t, {
    getState(call, callback) {
      withServerSpan(call, 'bpfleet.v1.AgentService/GetState', async () => {
        await new Promise((r) => setImmediate(r));
        inHandler = trace.getActiveSpan()?.spanContext();
        return { host: 'h1', labels: {}, attachments: [] };
      }).then((res) => callback(null, res), (err) => callback(toServiceError(err)));
    },
    apply(call, callback) {
      withServerSpan(call, 'bpfleet.v1.AgentService/Apply', () => {
        throw new BpfleetError('NOT_FOUND', 'NO_MODULE', 'no such module');
      }).then((res) => callback(null, res), (err) => callback(toServiceError(err)));
    },
  });
  const client = new AgentServiceClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { interceptors: [tracingInterceptor] });
  t.after(() => client.close());

  let callbackSaw: SpanContext | undefined;
  const caller = await telemetry.tracer.startActiveSpan('test.caller', async (span) => {
    const res = await new Promise<GetStateResponse>((resolve, reject) => client.getState({}, (err, r) => {
      callbackSaw = trace.getActiveSpan()?.spanContext();
      return err ? reject(err) : resolve(r);
    }));
    assert.equal(res.host, 'h1');
    await assert.rejects(
      new Promise((resolve, reject) => client.apply({ intent: undefined }, (err, r) => (err ? reject(err) : resolve(r)))),
      (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND,
    );
    span.end();
    return span.spanContext();
  });
  await telemetry.shutdown();

  assert.ok(receiver.contentTypes.every((c) => c === 'application/x-protobuf'), `content types: ${receiver.contentTypes}`);
  const find = (name: string, kind: number) => {
    const s = receiver.spans.find((x) => x.name === name && x.kind === kind);
    assert.ok(s, `no ${name} span of kind ${kind} among ${JSON.stringify(receiver.spans.map((x) => [x.name, x.kind]))}`);
    return s;
  };
  const client1 = find('bpfleet.v1.AgentService/GetState', SPAN_KIND_CLIENT);
  const server1 = find('bpfleet.v1.AgentService/GetState', SPAN_KIND_SERVER);
  assert.equal(client1.traceId, caller.traceId);
  assert.equal(server1.traceId, caller.traceId);
  assert.equal(client1.parentSpanId, caller.spanId);
  assert.equal(server1.parentSpanId, client1.spanId);
  assert.equal(inHandler?.spanId, server1.spanId, 'the handler runs with the server span active');
  assert.equal(callbackSaw?.spanId, caller.spanId, 'the client callback runs in the caller context');
  assert.equal(server1.serviceName, 'bpfleet-test');
  assert.deepEqual(
    [server1.attributes['rpc.system.name'], server1.attributes['rpc.method'], server1.attributes['rpc.status_code']],
    ['grpc', 'bpfleet.v1.AgentService/GetState', 'OK'],
  );

  const client2 = find('bpfleet.v1.AgentService/Apply', SPAN_KIND_CLIENT);
  const server2 = find('bpfleet.v1.AgentService/Apply', SPAN_KIND_SERVER);
  assert.equal(server2.parentSpanId, client2.spanId);
  assert.equal(client2.attributes['rpc.status_code'], 'NOT_FOUND');
  assert.equal(client2.statusCode, STATUS_CODE_ERROR, 'any non-OK status fails the client span');
  assert.notEqual(server2.statusCode, STATUS_CODE_ERROR, 'NOT_FOUND is the caller\'s error, not the server\'s');
  assert.equal(server2.attributes['rpc.status_code'], 'NOT_FOUND');
});

test('a stream the caller cancels ends its client span at once, as CANCELLED but not failed', async (t) => {
  const receiver = await otlpReceiver(t);
  withEnv(t, { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: undefined, OTEL_EXPORTER_OTLP_PROTOCOL: undefined, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: undefined });
  const telemetry = await startTelemetry({ serviceName: 'bpfleet-test', metricsPort: null });
  t.after(() => telemetry.shutdown());
  const server = new grpc.Server();
  const impl: Pick<ControlServiceServer, 'watchRollout'> = {
    watchRollout: (call) => void withServerSpan(call, 'bpfleet.v1.ControlService/WatchRollout', () => {
      call.write(Rollout.fromPartial({ id: call.request.id }));
    }),
  };
  server.addService(ControlServiceService, impl);
  t.after(() => server.forceShutdown());
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  const client = new ControlServiceClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { interceptors: [tracingInterceptor] });
  t.after(() => client.close());

  await telemetry.tracer.startActiveSpan('follow', async (span) => {
    const stream = client.watchRollout({ id: 'r1' });
    stream.on('error', () => undefined);
    const first = await new Promise<Rollout>((resolve) => stream.once('data', resolve));
    assert.equal(first.id, 'r1');
    stream.cancel();
    span.end();
  });
  // Right away, as a CLI does once it has seen the rollout end.
  await telemetry.shutdown();
  const watch = receiver.spans.find((s) => s.name === 'bpfleet.v1.ControlService/WatchRollout' && s.kind === SPAN_KIND_CLIENT);
  assert.ok(watch, `no client span among ${receiver.spans.map((s) => s.name)}`);
  assert.equal(watch.attributes['rpc.status_code'], 'CANCELLED');
  assert.notEqual(watch.statusCode, STATUS_CODE_ERROR);
  const served = receiver.spans.find((s) => s.name === 'bpfleet.v1.ControlService/WatchRollout' && s.kind === SPAN_KIND_SERVER);
  assert.equal(served?.parentSpanId, watch.spanId);
});

test('a server span without a caller trace starts a new trace', async (t) => {
  const telemetry = await startTelemetry({ serviceName: 'bpfleet-test', metricsPort: null });
  t.after(() => telemetry.shutdown());
  let inHandler: SpanContext | undefined;
  const port = await startAgentServer(t, {
    getState(call, callback) {
      withServerSpan(call, 'bpfleet.v1.AgentService/GetState', () => {
        inHandler = trace.getActiveSpan()?.spanContext();
        return { host: 'h1', labels: {}, attachments: [] };
      }).then((res) => callback(null, res), (err) => callback(toServiceError(err)));
    },
    apply: (_call, callback) => callback({ code: grpc.status.UNIMPLEMENTED }),
  });
  // No interceptor: the metadata has no traceparent.
  const client = new AgentServiceClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  t.after(() => client.close());
  await telemetry.tracer.startActiveSpan('unrelated', async (span) => {
    await new Promise((resolve, reject) => client.getState({}, (err, r) => (err ? reject(err) : resolve(r))));
    assert.ok(inHandler);
    assert.notEqual(inHandler.traceId, span.spanContext().traceId);
    span.end();
  });
});

test('without OTEL_EXPORTER_OTLP_ENDPOINT nothing is exported, not even to the default port', async (t) => {
  withEnv(t, { OTEL_EXPORTER_OTLP_ENDPOINT: undefined, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: undefined });
  // The exporter's default is http://localhost:4318; listen there on both loopbacks.
  let requests = 0;
  for (const host of ['127.0.0.1', '::1']) {
    const server = createServer((_req, res) => { requests++; res.end(); });
    try {
      await listenOn(server, 4318, host);
    } catch (err) {
      t.skip(`cannot listen on [${host}]:4318: ${(err as Error).message}`);
      return;
    }
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  }
  const telemetry = await startTelemetry({ serviceName: 'bpfleet-test', metricsPort: null });
  t.after(() => telemetry.shutdown());
  telemetry.tracer.startActiveSpan('quiet', (span) => {
    assert.ok(span.isRecording(), 'spans still exist in-process, for logs and propagation');
    span.end();
  });
  await telemetry.shutdown();
  assert.equal(requests, 0);
});

test('exporting with an OTLP protocol other than http/protobuf is refused, and start can be retried', async (t) => {
  withEnv(t, { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4317', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: undefined });
  await assert.rejects(startTelemetry({ serviceName: 'bpfleet-test', metricsPort: null }), /http\/protobuf/);
  process.env.OTEL_EXPORTER_OTLP_PROTOCOL = 'http/protobuf';
  const telemetry = await startTelemetry({ serviceName: 'bpfleet-test', metricsPort: null });
  await telemetry.shutdown();
});

test('startTelemetry twice without shutdown is an error', async (t) => {
  const telemetry = await startTelemetry({ serviceName: 'bpfleet-test', metricsPort: null });
  t.after(() => telemetry.shutdown());
  await assert.rejects(startTelemetry({ serviceName: 'bpfleet-test', metricsPort: null }), /twice/);
});

test('the Prometheus endpoint serves a counter and a histogram as they change', async (t) => {
  const telemetry = await startTelemetry({ serviceName: 'bpfleet-test', metricsPort: 0 });
  t.after(() => telemetry.shutdown());
  assert.match(telemetry.metricsUrl ?? '', /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
  assert.doesNotMatch(telemetry.metricsUrl ?? '', /:9464\//, 'port 0 means a free port, not the exporter default');

  const swaps = telemetry.meter.createCounter('bpfleet.test.swaps', { unit: '{swap}', description: 'Swaps done' });
  const duration = telemetry.meter.createHistogram('bpfleet.test.swap.duration', { unit: 's', description: 'Swap time' });
  swaps.add(2, { module: 'm1' });
  duration.record(0.02, { module: 'm1' });
  duration.record(0.3, { module: 'm1' });

  const first = await scrape(telemetry.metricsUrl!);
  assert.equal(first.get('bpfleet_test_swaps_total{module="m1",otel_scope_name="bpfleet"}'), 2);
  assert.equal(first.get('bpfleet_test_swap_duration_count{module="m1",otel_scope_name="bpfleet"}'), 2);
  assert.ok(Math.abs((first.get('bpfleet_test_swap_duration_sum{module="m1",otel_scope_name="bpfleet"}') ?? 0) - 0.32) < 1e-9);
  assert.equal(first.get('bpfleet_test_swap_duration_bucket{module="m1",otel_scope_name="bpfleet",le="0.025"}'), 1, 'seconds buckets, not the ms defaults');
  for (const le of SECONDS_BUCKETS) {
    assert.ok(first.has(`bpfleet_test_swap_duration_bucket{module="m1",otel_scope_name="bpfleet",le="${le}"}`), `bucket le=${le}`);
  }

  swaps.add(3, { module: 'm1' });
  duration.record(4, { module: 'm1' });
  const second = await scrape(telemetry.metricsUrl!);
  assert.equal(second.get('bpfleet_test_swaps_total{module="m1",otel_scope_name="bpfleet"}'), 5);
  assert.equal(second.get('bpfleet_test_swap_duration_count{module="m1",otel_scope_name="bpfleet"}'), 3);
  assert.equal(second.get('bpfleet_test_swap_duration_bucket{module="m1",otel_scope_name="bpfleet",le="5"}'), 3);
  assert.equal(second.get('bpfleet_test_swap_duration_bucket{module="m1",otel_scope_name="bpfleet",le="2.5"}'), 2);

  assert.equal((await fetch(telemetry.metricsUrl!.replace('/metrics', '/other'))).status, 404);

  const url = telemetry.metricsUrl!;
  await telemetry.shutdown();
  await assert.rejects(fetch(url), 'the endpoint is closed by shutdown');
});

test('metricsPort null serves nothing and hands out a no-op meter', async (t) => {
  const telemetry = await startTelemetry({ serviceName: 'bpfleet-test', metricsPort: null });
  t.after(() => telemetry.shutdown());
  assert.equal(telemetry.metricsUrl, undefined);
  telemetry.meter.createCounter('bpfleet.test.unused').add(1);
});
