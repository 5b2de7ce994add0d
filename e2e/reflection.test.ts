/**
 * Generic gRPC clients: a client that is not grpc-js (Debian's python3-grpcio and
 * python3-protobuf, e2e/support/grpc_reflect_call.py) learns the API from the control plane's
 * server reflection alone, builds the descriptors into a protobuf DescriptorPool, which
 * validates them as protoc does, and calls GetRollout and ListHosts, whose messages carry
 * map fields (selector, labels), over mutual TLS as the fleet's viewer. A real control plane
 * with a sim-dataplane host.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { LocalFleet } from '../dev/fleet.js';
import { SYSTEM_PYTHON } from '../dev/prereqs.js';
import { CommandError, run } from '../dev/processes.js';
import { prereqSkip } from './support/prereqs.js';

const skip = await prereqSkip(['root', 'etcd', 'nats', 'netns', 'nsenter', 'python3-grpc']);
const CLIENT = fileURLToPath(new URL('./support/grpc_reflect_call.py', import.meta.url));

describe('server reflection serves descriptors a protoc-based client accepts', { skip }, () => {
  let fleet: LocalFleet;

  /** Calls `method` with `request` through the Python client; a failure throws with its stderr. */
  async function call<T>(method: string, request: unknown): Promise<T> {
    try {
      const viewer = fleet.pki!.users.viewer;
      const { stdout } = await run(SYSTEM_PYTHON, [CLIENT, fleet.controlAddress, `bpfleet.v1.ControlService/${method}`, JSON.stringify(request), fleet.pki!.caPath, viewer.certPath, viewer.keyPath]);
      return JSON.parse(stdout) as T;
    } catch (err) {
      throw new Error(err instanceof CommandError ? `exit ${err.code}: ${err.stderr.trim()}` : String(err));
    }
  }

  before(async () => {
    fleet = await LocalFleet.start({ name: 'refl', hosts: 1, driver: 'sim', trafficPps: 0, network: 'routed' });
  });
  after(() => fleet?.stop());

  test('GetRollout and ListHosts through reflection, map fields included', async () => {
    await fleet.cliJson(['module', 'push', 'agent/bpf/pass-counter-v1.yaml']);
    const created = await fleet.cliJson<{ id: string }>(['rollout', 'create', '-f', 'examples/rollout-v1.yaml']);
    const rollout = await call<{ id: string; spec: { module: string; version: string; selector: Record<string, string> } }>('GetRollout', { id: created.id });
    assert.equal(rollout.id, created.id);
    assert.deepEqual([rollout.spec.module, rollout.spec.version, rollout.spec.selector], ['pass-counter', '1.0.0', { role: 'edge' }]);
    const hosts = await call<{ hosts: { name: string; labels: Record<string, string> }[] }>('ListHosts', {});
    assert.deepEqual(hosts.hosts.map((h) => [h.name, h.labels]), [['h1', { role: 'edge', zone: 'a' }]]);
  });

  test('an unknown rollout is NOT_FOUND to this client too', async () => {
    await assert.rejects(call('GetRollout', { id: 'no-such-rollout' }), /exit 1: rpc failed: (NOT_FOUND|INVALID_ARGUMENT)/);
  });
});
