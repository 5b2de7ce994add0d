/**
 * A tiny OTLP/HTTP trace receiver for tests: listens on 127.0.0.1, accepts what OTel SDKs
 * POST to /v1/traces (http/protobuf) and decodes the span fields tests assert on, straight
 * from the opentelemetry-proto wire format (no collector, no generated code).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BinaryReader } from '@bufbuild/protobuf/wire';

export type AttributeValue = string | number | boolean | (string | number | boolean)[];
export type Attributes = Record<string, AttributeValue>;

export interface ReceivedLink {
  traceId: string;
  spanId: string;
  attributes: Attributes;
}

export interface ReceivedEvent {
  name: string;
  attributes: Attributes;
}

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  startNs: bigint;
  endNs: bigint;
  attributes: Attributes;
  events: ReceivedEvent[];
  links: ReceivedLink[];
  statusCode: number;
  serviceName: string;
  resource: Attributes;
}

export const SPAN_KIND_SERVER = 2;
export const SPAN_KIND_CLIENT = 3;
export const SPAN_KIND_CONSUMER = 5;
export const STATUS_CODE_ERROR = 2;

function eachField(bytes: Uint8Array, onField: (field: number, reader: BinaryReader) => void): void {
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    const before = reader.pos;
    onField(field, reader);
    if (reader.pos === before) reader.skip(wireType);
  }
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** opentelemetry.proto.common.v1.AnyValue: scalars and arrays of scalars. */
function decodeAnyValue(bytes: Uint8Array): AttributeValue {
  let value: AttributeValue = '';
  eachField(bytes, (f, r) => {
    if (f === 1) value = r.string();
    if (f === 2) value = r.bool();
    if (f === 3) value = Number(r.int64());
    if (f === 4) value = r.double();
    if (f === 5) {
      const items: (string | number | boolean)[] = [];
      eachField(r.bytes(), (af, ar) => {
        if (af === 1) {
          const item = decodeAnyValue(ar.bytes());
          if (!Array.isArray(item)) items.push(item);
        }
      });
      value = items;
    }
  });
  return value;
}

function decodeKeyValue(bytes: Uint8Array, into: Attributes): void {
  let key = '';
  let value: AttributeValue = '';
  eachField(bytes, (f, r) => {
    if (f === 1) key = r.string();
    if (f === 2) value = decodeAnyValue(r.bytes());
  });
  into[key] = value;
}

function decodeSpan(bytes: Uint8Array): Omit<ReceivedSpan, 'serviceName' | 'resource'> {
  const span: Omit<ReceivedSpan, 'serviceName' | 'resource'> = {
    traceId: '', spanId: '', parentSpanId: '', name: '', kind: 0, startNs: 0n, endNs: 0n,
    attributes: {}, events: [], links: [], statusCode: 0,
  };
  eachField(bytes, (f, r) => {
    if (f === 1) span.traceId = hex(r.bytes());
    if (f === 2) span.spanId = hex(r.bytes());
    if (f === 4) span.parentSpanId = hex(r.bytes());
    if (f === 5) span.name = r.string();
    if (f === 6) span.kind = r.int32();
    if (f === 7) span.startNs = BigInt(r.fixed64());
    if (f === 8) span.endNs = BigInt(r.fixed64());
    if (f === 9) decodeKeyValue(r.bytes(), span.attributes);
    if (f === 11) {
      const event: ReceivedEvent = { name: '', attributes: {} };
      eachField(r.bytes(), (ef, er) => {
        if (ef === 2) event.name = er.string();
        if (ef === 3) decodeKeyValue(er.bytes(), event.attributes);
      });
      span.events.push(event);
    }
    if (f === 13) {
      const link: ReceivedLink = { traceId: '', spanId: '', attributes: {} };
      eachField(r.bytes(), (lf, lr) => {
        if (lf === 1) link.traceId = hex(lr.bytes());
        if (lf === 2) link.spanId = hex(lr.bytes());
        if (lf === 4) decodeKeyValue(lr.bytes(), link.attributes);
      });
      span.links.push(link);
    }
    if (f === 15) eachField(r.bytes(), (cf, cr) => { if (cf === 3) span.statusCode = cr.int32(); });
  });
  return span;
}

/** opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest → flat spans. */
export function decodeTraceRequest(body: Uint8Array): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  eachField(body, (f, r) => {
    if (f !== 1) return;
    const resource: Attributes = {};
    const inResource: Omit<ReceivedSpan, 'serviceName' | 'resource'>[] = [];
    eachField(r.bytes(), (rf, rr) => {
      if (rf === 1) eachField(rr.bytes(), (af, ar) => { if (af === 1) decodeKeyValue(ar.bytes(), resource); });
      if (rf !== 2) return;
      eachField(rr.bytes(), (sf, sr) => {
        if (sf === 2) inResource.push(decodeSpan(sr.bytes()));
      });
    });
    for (const span of inResource) spans.push({ ...span, serviceName: String(resource['service.name'] ?? ''), resource });
  });
  return spans;
}

export interface OtlpReceiver {
  /** For OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:<port>". */
  endpoint: string;
  /** Every span received so far, in arrival order. */
  spans: ReceivedSpan[];
  /** Content-Type of every request received. */
  contentTypes: string[];
  /** Resolves once `done(spans)` holds, or rejects with `describe()` after `timeoutMs`. */
  waitFor(done: (spans: readonly ReceivedSpan[]) => boolean, timeoutMs: number, describe?: () => string): Promise<void>;
  close(): Promise<void>;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const contentTypes: string[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      contentTypes.push(String(req.headers['content-type']));
      if (req.url === '/v1/traces') spans.push(...decodeTraceRequest(Buffer.concat(chunks)));
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    contentTypes,
    async waitFor(done, timeoutMs, describe) {
      const deadline = Date.now() + timeoutMs;
      while (!done(spans)) {
        if (Date.now() > deadline) throw new Error(`spans not received within ${timeoutMs} ms${describe ? `: ${describe()}` : ''}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

/**
 * A receiver that this process's OTLP exporter sends to (OTEL_EXPORTER_OTLP_ENDPOINT) for
 * the rest of test `t`; both are undone when `t` ends.
 */
export async function exportingTo(t: { after(fn: () => unknown): void }): Promise<OtlpReceiver> {
  const receiver = await startOtlpReceiver();
  t.after(() => receiver.close());
  const saved = process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.endpoint;
  t.after(() => {
    if (saved === undefined) delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
    else process.env.OTEL_EXPORTER_OTLP_ENDPOINT = saved;
  });
  return receiver;
}
