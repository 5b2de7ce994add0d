import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { BpfleetError } from '../common/errors.js';
import { loadAgentConfig } from './config.js';

const dir = mkdtempSync(join(tmpdir(), 'bpfleet-agent-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function message(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof BpfleetError);
    return err.message;
  }
  assert.fail('expected a config error');
}

describe('agent config', () => {
  it('today\'s flags keep their names and meaning', () => {
    const { config } = loadAgentConfig({
      host: 'h1', listen: '127.0.0.1:0', advertise: '198.18.0.2:50061', etcd: 'http://127.0.0.1:1', nats: 'nats://127.0.0.1:2',
      label: { zone: 'a' }, driver: 'sim', pinRoot: '/sys/fs/bpf/t', netns: 'ns1', cacheDir: '/tmp/c', telemetryInterval: '250',
      leaseTtl: '3', requireSignatures: true, trustedKeys: '/keys', simLoadDelay: '40', metricsPort: 9100, metricsHost: '0.0.0.0',
      tlsCa: '/pki/ca.crt', tlsCert: '/pki/h1.crt', tlsKey: '/pki/h1.key',
    }, {});
    assert.deepEqual(config, {
      host: { name: 'h1', labels: { zone: 'a' } }, listen: '127.0.0.1:0', advertise: '198.18.0.2:50061',
      etcd: { endpoints: ['http://127.0.0.1:1'] }, nats: { servers: ['nats://127.0.0.1:2'] },
      grpc: { tls: { ca: '/pki/ca.crt', cert: '/pki/h1.crt', key: '/pki/h1.key' } },
      pinRoot: '/sys/fs/bpf/t', cacheDir: '/tmp/c', metrics: { port: 9100, host: '0.0.0.0' },
      signatures: { require: true, trustedKeysDir: '/keys' }, logLevel: 'info', driver: 'sim', netns: 'ns1',
      telemetryIntervalMs: 250, leaseTtlSeconds: 3, simLoadDelayMs: 40, simClockOffsetMs: 0,
    });
  });

  it('a full config file, overridden by env and flags', () => {
    const path = join(dir, 'agent.yaml');
    writeFileSync(path, `host:
  name: edge-1
  labels: {zone: a}
listen: 10.0.0.5:50061
etcd: {endpoints: [https://10.0.0.1:2379], tls: {ca: /etc/bpfleet/tls/ca.crt}}
signatures: {require: true, trustedKeysDir: /etc/bpfleet/trusted-keys}
logLevel: warn
`);
    const { config } = loadAgentConfig({ config: path, host: 'edge-2' }, { BPFLEET_LOG_LEVEL: 'debug', BPFLEET_PIN_ROOT: '/sys/fs/bpf/other' });
    assert.equal(config.host.name, 'edge-2');
    assert.deepEqual(config.host.labels, { zone: 'a' });
    assert.equal(config.logLevel, 'debug');
    assert.equal(config.pinRoot, '/sys/fs/bpf/other');
    assert.deepEqual(config.etcd.tls, { ca: '/etc/bpfleet/tls/ca.crt' });
  });

  it('refuses what the old flags refused, naming the field', () => {
    assert.match(message(() => loadAgentConfig({ host: 'Bad_Name' }, {})), /host\.name \(from --host\): host name: lowercase/);
    assert.match(message(() => loadAgentConfig({ driver: 'ebpf' }, {})), /driver \(from --driver\)/);
    assert.match(message(() => loadAgentConfig({ requireSignatures: true }, {})), /--require-signatures needs --trusted-keys <dir>/);
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']));
    assert.match(message(() => loadAgentConfig({ label: many }, {})), /host\.labels \(from --label\): at most 64 labels/);
    assert.match(message(() => loadAgentConfig({ label: { 'a b': 'c' } }, {})), /host\.labels\.a b \(from --label\): label keys/);
  });
});

describe('infra/config/agent.yaml', () => {
  it('is a valid agent config, as shipped in the package', () => {
    const path = fileURLToPath(new URL('../infra/config/agent.yaml', import.meta.url));
    const { config } = loadAgentConfig({ config: path }, {});
    assert.deepEqual(config.host.labels, { zone: 'eu-1a', role: 'edge' });
  });
});
