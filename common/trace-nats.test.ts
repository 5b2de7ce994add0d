import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { context, trace, type Context } from '@opentelemetry/api';
import { connect, headers, type Msg, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { startTelemetry, type Telemetry } from './otel.js';
import { extractContext, injectHeaders } from './trace-nats.js';

let server: ChildProcess | undefined;
let nc: NatsConnection | undefined;
let telemetry: Telemetry | undefined;
const killServer = () => server?.kill('SIGKILL');

/** nats-server on a kernel-chosen loopback port; resolves with the address it reports. */
function startNatsServer(): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('nats-server', ['-a', '127.0.0.1', '-p', '-1'], { stdio: ['ignore', 'ignore', 'pipe'] });
    server = child;
    // Also on abrupt exits of the test process, where after() hooks do not run.
    process.once('exit', killServer);
    let log = '';
    const timer = setTimeout(() => reject(new Error(`nats-server did not start:\n${log}`)), 10_000);
    child.once('error', (err) => { clearTimeout(timer); reject(err); });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`nats-server exited with ${code}:\n${log}`)); });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      log += chunk;
      const m = /Listening for client connections on (\S+:\d+)/.exec(log);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
}

before(async () => {
  telemetry = await startTelemetry({ serviceName: 'bpfleet-test', metricsPort: null });
  nc = await connect({ servers: await startNatsServer() });
});

after(async () => {
  try {
    await nc?.close();
    await telemetry?.shutdown();
  } finally {
    killServer();
    process.off('exit', killServer);
  }
});

/** Publishes one message and returns the context its subscriber extracted. */
async function roundTrip(subject: string, publish: (conn: NatsConnection) => void): Promise<{ ctx: Context; msg: Msg }> {
  const conn = nc!;
  const sub = conn.subscribe(subject, { max: 1 });
  await conn.flush();
  publish(conn);
  for await (const msg of sub) return { ctx: extractContext(msg.headers), msg };
  throw new Error(`no message on ${subject}`);
}

test('the publisher span is the remote parent of the consumer span', async () => {
  const tracer = telemetry!.tracer;
  const published = tracer.startSpan('telemetry publish');
  const { ctx, msg } = await roundTrip('t.parent', (conn) => {
    context.with(trace.setSpan(context.active(), published), () => {
      conn.publish('t.parent', 'sample', { headers: injectHeaders() });
    });
  });
  published.end();
  assert.match(msg.headers?.get('traceparent') ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  const remote = trace.getSpanContext(ctx);
  assert.equal(remote?.traceId, published.spanContext().traceId);
  assert.equal(remote?.spanId, published.spanContext().spanId);
  assert.equal(remote?.isRemote, true);

  context.with(ctx, () => tracer.startActiveSpan('telemetry consume', (consumed) => {
    assert.equal(consumed.spanContext().traceId, published.spanContext().traceId);
    assert.equal((consumed as unknown as { parentSpanContext?: { spanId: string } }).parentSpanContext?.spanId, published.spanContext().spanId);
    consumed.end();
  }));
});

test('headers passed in keep their other entries', async () => {
  const span = telemetry!.tracer.startSpan('publish');
  const hdrs = headers();
  hdrs.set('bpfleet-host', 'h1');
  const { ctx, msg } = await roundTrip('t.merge', (conn) => {
    conn.publish('t.merge', 'x', { headers: injectHeaders(hdrs, trace.setSpan(context.active(), span)) });
  });
  span.end();
  assert.equal(msg.headers?.get('bpfleet-host'), 'h1');
  assert.equal(trace.getSpanContext(ctx)?.spanId, span.spanContext().spanId);
});

test('a canonicalized Traceparent header (as Go clients send it) is understood', async () => {
  const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  const { ctx } = await roundTrip('t.canonical', (conn) => {
    const hdrs = headers();
    hdrs.set('Traceparent', traceparent);
    conn.publish('t.canonical', 'x', { headers: hdrs });
  });
  assert.equal(trace.getSpanContext(ctx)?.traceId, '0af7651916cd43dd8448eb211c80319c');
});

test('no headers, headers without trace context, or an empty traceparent give no parent', async () => {
  const cases: [string, MsgHdrs | undefined][] = [['none', undefined]];
  const other = headers();
  other.set('bpfleet-host', 'h1');
  cases.push(['other', other]);
  const empty = headers();
  empty.set('traceparent', '');
  cases.push(['empty', empty]);
  for (const [name, hdrs] of cases) {
    const { ctx } = await roundTrip(`t.${name}`, (conn) => conn.publish(`t.${name}`, 'x', hdrs ? { headers: hdrs } : undefined));
    assert.equal(trace.getSpanContext(ctx), undefined, name);
  }
});

test('a consumer running inside some unrelated span does not adopt it', () => {
  const unrelated = telemetry!.tracer.startSpan('unrelated');
  const ctx = context.with(trace.setSpan(context.active(), unrelated), () => extractContext(headers()));
  unrelated.end();
  assert.equal(trace.getSpanContext(ctx), undefined);
});
