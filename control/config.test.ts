import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { DEFAULT_TELEMETRY_MAX_SKEW_MS } from './analysis/ingest.js';
import { loadControlConfig } from './config.js';

describe('control config', () => {
  it('today\'s flags keep their names and meaning', () => {
    const { config } = loadControlConfig({ listen: '127.0.0.1:0', etcd: 'http://127.0.0.1:1', nats: 'nats://127.0.0.1:2', id: 'r1', leaderTtl: '2', metricsPort: 0 }, {});
    assert.deepEqual(config, {
      id: 'r1', listen: '127.0.0.1:0', etcd: { endpoints: ['http://127.0.0.1:1'] }, nats: { servers: ['nats://127.0.0.1:2'] },
      grpc: { insecure: true }, metrics: { port: 0, host: '127.0.0.1' }, logLevel: 'info', leaderTtlSeconds: 2,
      telemetryMaxSkewMs: DEFAULT_TELEMETRY_MAX_SKEW_MS,
    });
  });

  it('infra/config/control.yaml is a valid control config, as shipped in the package', () => {
    const path = fileURLToPath(new URL('../infra/config/control.yaml', import.meta.url));
    assert.equal(loadControlConfig({ config: path }, {}).config.id, 'control-1');
  });
});
