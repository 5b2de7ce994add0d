import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTelemetry } from './otel.js';
import { createLogger } from './log.js';

function capture() {
  const lines: string[] = [];
  return { lines, destination: { write: (line: string) => void lines.push(line) } };
}

test('log lines carry the active span\'s trace and span ids, and only inside a span', async (t) => {
  const telemetry = await startTelemetry({ serviceName: 'bpfleet-test', metricsPort: null });
  t.after(() => telemetry.shutdown());
  const { lines, destination } = capture();
  const log = createLogger('rollout', { destination, level: 'info' });

  log.info('outside');
  const ids = await telemetry.tracer.startActiveSpan('wave', async (span) => {
    await new Promise((r) => setImmediate(r));
    log.child({ rollout: 'r1' }).info({ wave: 2 }, 'inside');
    span.end();
    return span.spanContext();
  });

  const [outside, inside] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(outside?.trace_id, undefined);
  assert.equal(outside?.span_id, undefined);
  assert.deepEqual(
    { level: inside?.level, component: inside?.component, rollout: inside?.rollout, wave: inside?.wave, msg: inside?.msg },
    { level: 'info', component: 'rollout', rollout: 'r1', wave: 2, msg: 'inside' },
  );
  assert.equal(inside?.trace_id, ids.traceId);
  assert.equal(inside?.span_id, ids.spanId);
  assert.equal(inside?.trace_flags, '01');
  assert.match(String(inside?.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
});

test('BPFLEET_LOG_LEVEL sets the level; an unknown level warns and logs at info', (t) => {
  const saved = process.env.BPFLEET_LOG_LEVEL;
  t.after(() => {
    if (saved === undefined) delete process.env.BPFLEET_LOG_LEVEL;
    else process.env.BPFLEET_LOG_LEVEL = saved;
  });

  process.env.BPFLEET_LOG_LEVEL = 'warn';
  const quiet = capture();
  const warnOnly = createLogger('agent', { destination: quiet.destination });
  warnOnly.info('dropped');
  warnOnly.warn('kept');
  assert.deepEqual(quiet.lines.map((l) => JSON.parse(l).msg), ['kept']);

  process.env.BPFLEET_LOG_LEVEL = 'loud';
  const fallback = capture();
  const log = createLogger('agent', { destination: fallback.destination });
  log.debug('dropped');
  log.info('kept');
  const records = fallback.lines.map((l) => JSON.parse(l) as { level: string; msg: string });
  assert.equal(records.length, 2);
  assert.equal(records[0]?.level, 'warn');
  assert.match(records[0]?.msg ?? '', /"loud"/);
  assert.equal(records[1]?.msg, 'kept');
});

test('pretty lines are short and human-readable, with the trace id and error stacks', async (t) => {
  const telemetry = await startTelemetry({ serviceName: 'bpfleet-test', metricsPort: null });
  t.after(() => telemetry.shutdown());
  const { lines, destination } = capture();
  const log = createLogger('agent', { destination, pretty: true, level: 'info' });
  const traceId = telemetry.tracer.startActiveSpan('apply', (span) => {
    log.warn({ attachment: 'xdp:eth0', err: new Error('verifier said no') }, 'apply refused');
    span.end();
    return span.spanContext().traceId;
  });
  const text = (lines[0] ?? '').replace(/\x1b\[[0-9;]*m/g, '');
  assert.match(text, /^\d\d:\d\d:\d\d\.\d{3} WARN  agent: apply refused attachment=xdp:eth0 /);
  assert.match(text, new RegExp(`trace_id=${traceId}`));
  assert.match(text, /\n {2}Error: verifier said no\n {2}\s+at /);
  assert.doesNotMatch(text, /^\{/);
});
