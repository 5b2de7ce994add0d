import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { BpfleetError } from '../common/errors.js';
import { transportFromConfig } from '../common/tls.js';
import { loadControlConfig } from './config.js';

describe('control config', () => {
  it('today\'s flags keep their names and meaning', () => {
    const { config } = loadControlConfig({ listen: '127.0.0.1:0', etcd: 'http://127.0.0.1:1', nats: 'nats://127.0.0.1:2', id: 'r1', leaderTtl: '2', metricsPort: 0, insecure: true, requireSignatures: true, trustedKeys: '/keys' }, {});
    assert.deepEqual(config, {
      id: 'r1', listen: '127.0.0.1:0', etcd: { endpoints: ['http://127.0.0.1:1'] }, nats: { servers: ['nats://127.0.0.1:2'] },
      grpc: { insecure: true }, metrics: { port: 0, host: '127.0.0.1' }, logLevel: 'info', leaderTtlSeconds: 2,
      telemetryMaxSkewMs: 300_000, artifactReplicas: 1, signatures: { require: true, trustedKeysDir: '/keys' },
    });
  });

  it('gRPC: TLS files from flags or env, --insecure over the file, and neither refuses to start', () => {
    assert.deepEqual(loadControlConfig({ tlsCa: '/ca', tlsCert: '/c', tlsKey: '/k' }, {}).config.grpc, { tls: { ca: '/ca', cert: '/c', key: '/k' } });
    assert.deepEqual(loadControlConfig({}, { BPFLEET_TLS_CA: '/ca', BPFLEET_TLS_CERT: '/c', BPFLEET_TLS_KEY: '/k' }).config.grpc, { tls: { ca: '/ca', cert: '/c', key: '/k' } });
    assert.deepEqual(loadControlConfig({ insecure: true }, { BPFLEET_TLS_CA: '/ca', BPFLEET_TLS_CERT: '/c', BPFLEET_TLS_KEY: '/k' }).config.grpc, { insecure: true });
    assert.throws(() => loadControlConfig({ insecure: true, tlsCa: '/ca' }, {}), /--insecure and TLS files .* exclude each other/);
    assert.throws(() => loadControlConfig({ tlsCa: '/ca' }, {}), /grpc/);
    const none = loadControlConfig({}, {}).config.grpc;
    assert.equal(none, undefined);
    assert.throws(() => transportFromConfig(none, 'bpfleet-control'),
      (err: unknown) => err instanceof BpfleetError && err.reason === 'INSECURE_NOT_CHOSEN' && /no TLS certificate given: pass --tls-ca .* or --insecure/.test(err.message));
  });

  it('--artifact-replicas: 1 to 5 replicas of the module object store, default 1', () => {
    assert.equal(loadControlConfig({ insecure: true }, {}).config.artifactReplicas, 1);
    assert.equal(loadControlConfig({ insecure: true, artifactReplicas: '3' }, {}).config.artifactReplicas, 3);
    assert.throws(() => loadControlConfig({ insecure: true, artifactReplicas: '0' }, {}), /artifactReplicas \(from --artifact-replicas\)/);
    assert.throws(() => loadControlConfig({ insecure: true, artifactReplicas: '6' }, {}), /artifactReplicas/);
  });

  it('infra/config/control.yaml is a valid control config, as shipped in the package', () => {
    const path = fileURLToPath(new URL('../infra/config/control.yaml', import.meta.url));
    assert.equal(loadControlConfig({ config: path }, {}).config.id, 'control-1');
  });
});
