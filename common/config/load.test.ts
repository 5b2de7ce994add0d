import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import YAML from 'yaml';
import { BpfleetError } from '../errors.js';
import { changedFields, configuredFields, explicitConfigPath, printableConfig, sharedEnvValues } from './daemon.js';
import { loadConfig, parseLabels, readConfigFile } from './load.js';
import { REDACTED, redact } from './redact.js';
import { z } from 'zod';
import { SHARED_ENV, sharedFlagValues, type SharedFlags } from './daemon.js';
import { etcdSchema, grpcSchema, hostPort, logLevel, metricsSchema, natsSchema } from './schema.js';

// A daemon-like schema from the shared parts: the loader's behaviour, apart from either daemon.
const schema = z.strictObject({
  listen: hostPort.default('127.0.0.1:50051'),
  etcd: etcdSchema.prefault({}),
  nats: natsSchema.prefault({}),
  grpc: grpcSchema.default({ insecure: true }),
  metrics: metricsSchema.prefault({}),
  logLevel: logLevel.default('info'),
  labels: z.record(z.string(), z.string()).default({}),
  pinRoot: z.string().refine((p) => p.startsWith('/'), 'an absolute path').default('/sys/fs/bpf/x'),
  ttlSeconds: z.number().int().min(1).default(10),
});
interface TestFlags extends SharedFlags { labels?: Record<string, string>; ttl?: number | string }
function load(opts: TestFlags, env: NodeJS.ProcessEnv) {
  const flags = sharedFlagValues(opts);
  if (opts.labels) flags.push({ flag: '--label', path: ['labels'], value: opts.labels });
  if (opts.ttl !== undefined) flags.push({ flag: '--ttl', path: ['ttlSeconds'], value: opts.ttl });
  return loadConfig(schema, {
    explicitPath: explicitConfigPath(opts, env, 'BPFLEET_AGENT_CONFIG'), defaultPath: join(dir, 'absent.yaml'), env: sharedEnvValues(env),
    envBindings: [...SHARED_ENV, { name: 'BPFLEET_LABELS', path: ['labels'], parse: (t) => parseLabels(t) }], flags,
  });
}

const dir = mkdtempSync(join(tmpdir(), 'bpfleet-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function file(text: string): string {
  const path = join(dir, `c${n++}.yaml`);
  writeFileSync(path, text);
  return path;
}
/** The CONFIG_INVALID message of `fn`, which must throw one. */
function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof BpfleetError, String(err));
    assert.match(err.reason, /^CONFIG_/);
    return err.message;
  }
  assert.fail('expected a config error');
}

describe('precedence: file < env < flag', () => {
  const path = file('listen: 10.0.0.1:1\netcd: {endpoints: [http://file:2379]}\nnats: {servers: [nats://file:4222]}\nlogLevel: warn\n');

  it('the file alone', () => {
    const { config, file: read } = load({ config: path }, {});
    assert.equal(read, path);
    assert.equal(config.listen, '10.0.0.1:1');
    assert.deepEqual(config.etcd.endpoints, ['http://file:2379']);
    assert.equal(config.logLevel, 'warn');
  });

  it('env over the file, field by field', () => {
    const { config } = load({ config: path }, { BPFLEET_ETCD: 'http://env:2379,http://env2:2379', BPFLEET_LOG_LEVEL: 'debug' });
    assert.deepEqual(config.etcd.endpoints, ['http://env:2379', 'http://env2:2379']);
    assert.equal(config.logLevel, 'debug');
    assert.equal(config.listen, '10.0.0.1:1');
    assert.deepEqual(config.nats.servers, ['nats://file:4222']);
  });

  it('flags over env and file', () => {
    const { config } = load({ config: path, etcd: 'http://flag:2379', logLevel: 'error' }, { BPFLEET_ETCD: 'http://env:2379', BPFLEET_LOG_LEVEL: 'debug' });
    assert.deepEqual(config.etcd.endpoints, ['http://flag:2379']);
    assert.equal(config.logLevel, 'error');
  });

  it('a flag replaces the whole label map of the file', () => {
    const labelled = file('labels: {zone: a, rack: r1}\n');
    assert.deepEqual(load({ config: labelled }, {}).config.labels, { zone: 'a', rack: 'r1' });
    assert.deepEqual(load({ config: labelled }, { BPFLEET_LABELS: 'zone=b' }).config.labels, { zone: 'b' });
    assert.deepEqual(load({ config: labelled, labels: { role: 'edge' } }, { BPFLEET_LABELS: 'zone=b' }).config.labels, { role: 'edge' });
  });

  it('the daemon\'s variable names the file; --config wins over it; BPFLEET_CONFIG (the CLI\'s) is not read', () => {
    const other = file('listen: 10.0.0.2:2\n');
    assert.equal(load({}, { BPFLEET_AGENT_CONFIG: path }).config.listen, '10.0.0.1:1');
    assert.equal(load({ config: other }, { BPFLEET_AGENT_CONFIG: path }).config.listen, '10.0.0.2:2');
    assert.equal(load({}, { BPFLEET_CONFIG: path }).config.listen, '127.0.0.1:50051');
    assert.equal(load({}, { BPFLEET_CONFIG: path, BPFLEET_CONTROL_CONFIG: path }).config.listen, '127.0.0.1:50051', 'the other daemon\'s variable is not read either');
  });

  it('BPFLEET_INSECURE=1 is --insecure: it replaces the file\'s TLS section; TLS flags win over it; TLS variables with it are refused', () => {
    const tls = file('grpc: {tls: {ca: /pki/ca.crt, cert: /pki/h1.crt, key: /pki/h1.key}}\n');
    assert.deepEqual(load({ config: tls }, { BPFLEET_INSECURE: '1' }).config.grpc, { insecure: true });
    assert.deepEqual(load({ config: tls }, { BPFLEET_INSECURE: 'true' }).config.grpc, { insecure: true });
    assert.deepEqual(load({ config: tls }, { BPFLEET_INSECURE: '' }).config.grpc, { tls: { ca: '/pki/ca.crt', cert: '/pki/h1.crt', key: '/pki/h1.key' } });
    assert.deepEqual(load({ tlsCa: '/a', tlsCert: '/b', tlsKey: '/c' }, { BPFLEET_INSECURE: '1' }).config.grpc, { tls: { ca: '/a', cert: '/b', key: '/c' } });
    assert.throws(() => load({}, { BPFLEET_INSECURE: '0' }), /env BPFLEET_INSECURE: "0": only 1 or true/);
    assert.throws(() => load({}, { BPFLEET_INSECURE: 'yes' }), /env BPFLEET_INSECURE: "yes": only 1 or true/);
    assert.throws(() => load({}, { BPFLEET_INSECURE: '1', BPFLEET_TLS_CA: '/a', BPFLEET_TLS_KEY: '/k' }), /env BPFLEET_INSECURE and env BPFLEET_TLS_CA, BPFLEET_TLS_KEY exclude each other/);
  });

  it('without a file: the built-in defaults under the shared flags', () => {
    const { config, file: read } = load({ listen: '127.0.0.1:0', etcd: 'http://127.0.0.1:1', nats: 'nats://127.0.0.1:2', metricsPort: 0 }, {});
    assert.equal(read, null);
    assert.deepEqual(config, {
      listen: '127.0.0.1:0', etcd: { endpoints: ['http://127.0.0.1:1'] }, nats: { servers: ['nats://127.0.0.1:2'] },
      grpc: { insecure: true }, metrics: { port: 0, host: '127.0.0.1' }, logLevel: 'info', labels: {}, pinRoot: '/sys/fs/bpf/x', ttlSeconds: 10,
    });
  });
});

describe('errors name the field and where its value came from', () => {
  it('unknown fields are refused, at any depth', () => {
    const msg = configError(() => load({ config: file('lisen: 1.2.3.4:5\netcd: {endpoint: [http://x:1]}\n') }, {}));
    assert.match(msg, /lisen \(from .*c\d+\.yaml\): unknown field/);
    assert.match(msg, /etcd\.endpoint \(from .*\): unknown field/);
  });

  it('every bad field in one message, each with its layer', () => {
    const msg = configError(() => load({ config: file('pinRoot: relative/dir\n'), ttl: 0 }, { BPFLEET_ETCD: 'etcd:2379' }));
    assert.match(msg, /pinRoot \(from .*\.yaml\): an absolute path/);
    assert.match(msg, /ttlSeconds \(from --ttl\): Too small/);
    assert.match(msg, /etcd\.endpoints\.0 \(from env BPFLEET_ETCD\): expected http\(s\):\/\/host:port/);
  });

  it('a value that is not a number says so', () => {
    assert.match(configError(() => load({ ttl: 'five' }, {})), /ttlSeconds \(from --ttl\): .*expected number/i);
    assert.match(configError(() => load({}, { BPFLEET_METRICS_PORT: '70000' })), /env BPFLEET_METRICS_PORT: "70000" is not a TCP port/);
  });

  it('grpc: tls or insecure: true, never both, never insecure: false', () => {
    assert.match(configError(() => load({ config: file('grpc: {insecure: false}\n') }, {})), /grpc/);
    assert.match(configError(() => load({ config: file('grpc: {insecure: true, tls: {ca: /a, cert: /b, key: /c}}\n') }, {})), /grpc/);
    assert.deepEqual(load({ config: file('grpc: {tls: {ca: /a, cert: /b, key: /c}}\n') }, {}).config.grpc, { tls: { ca: '/a', cert: '/b', key: '/c' } });
  });

  it('credentials that go together', () => {
    assert.match(configError(() => load({ config: file('etcd: {username: bpfleet}\n') }, {})), /etcd \(from .*\.yaml\): username needs password or passwordFile/);
    assert.match(configError(() => load({ config: file('etcd: {tls: {ca: /ca.pem, cert: /c.pem}}\n') }, {})), /etcd\.tls .*cert and key go together/);
  });

  it('a missing --config file is an error; a missing default file is not', () => {
    assert.match(configError(() => load({ config: join(dir, 'absent.yaml') }, {})), /cannot read config file .*absent\.yaml/);
    assert.equal(readConfigFile(join(dir, 'absent.yaml'), false), null);
  });

  it('bad YAML and a top level that is not a mapping', () => {
    assert.match(configError(() => readConfigFile(file('listen: [\n'), true)), /not valid YAML/);
    assert.match(configError(() => readConfigFile(file('- a\n- b\n'), true)), /a mapping of fields/);
    assert.match(configError(() => readConfigFile(file('a: 1\na: 2\n'), true)), /not valid YAML/);
  });

  it('labels are key=value', () => {
    assert.throws(() => parseLabels('zone'), /label "zone" is not key=value/);
    assert.deepEqual(parseLabels('a=b=c,d='), { a: 'b=c', d: '' });
    assert.match(configError(() => load({}, { BPFLEET_LABELS: 'zone' })), /env BPFLEET_LABELS: label "zone" is not key=value/);
  });
});

describe('redaction and reload', () => {
  it('--print-config redacts secrets and keeps everything else', () => {
    const { config } = load({ config: file('etcd: {username: u, password: hunter2}\nnats: {token: t0k3n}\n') }, {});
    const printed = printableConfig(config);
    assert.doesNotMatch(printed, /hunter2|t0k3n/);
    const back = YAML.parse(printed) as typeof config;
    assert.equal(back.etcd.password, REDACTED);
    assert.equal(back.nats.token, REDACTED);
    assert.equal(back.etcd.username, 'u');
    assert.equal(config.etcd.password, 'hunter2', 'redaction copies: the config itself keeps the secret');
  });

  it('redact leaves absent secrets absent', () => {
    assert.deepEqual(redact({ a: { password: undefined, b: [{ token: 'x' }] } }), { a: { password: undefined, b: [{ token: REDACTED }] } });
  });

  it('changedFields names what a reload changes; a label map is one field', () => {
    const a = load({ labels: { zone: 'a' } }, {}).config;
    const b = load({ labels: { zone: 'b', rack: '1' }, logLevel: 'debug', etcd: 'http://other:2379' }, {}).config;
    assert.deepEqual(changedFields(a, b).sort(), ['etcd.endpoints', 'labels', 'logLevel']);
    assert.deepEqual(changedFields(a, a), []);
  });

  it('configuredFields finds settings this build does not use yet', () => {
    const { config } = load({ config: file('nats: {credsFile: /n.creds}\n') }, {});
    assert.deepEqual(configuredFields(config, ['etcd.tls', 'nats.credsFile', 'grpc.tls']), ['nats.credsFile']);
  });
});

