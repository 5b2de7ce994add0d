/**
 * The Kubernetes manifests in infra/k8s/ keep the design infra/k8s/README.md describes:
 * the agent unprivileged with exactly the BPF capabilities, on the host network, its pins on
 * the host's bpffs; three control plane replicas with no capabilities; no service account
 * token mounted. Every object validates against the Kubernetes API schemas that the npm
 * package kubernetes-models 5.1.0 carries (generated from Kubernetes 1.34: resource.k8s.io/v1
 * is in them); those schemas check types and required fields, not unknown field names.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import YAML from 'yaml';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { agentConfigSchema } from '../agent/config.js';
import { controlConfigSchema } from '../control/config.js';

const DIR = fileURLToPath(new URL('k8s/', import.meta.url));
type Obj = { kind: string; metadata: { name: string }; [k: string]: unknown };
// Plain property access into parsed YAML: the manifests' own shape is what is under test.
// Read as YAML 1.1, as kubectl reads them: `defaultMode: 0440` is octal there.
const docs: any[] = readdirSync(DIR).filter((f) => f.endsWith('.yaml')).flatMap((f) =>
  YAML.parseAllDocuments(readFileSync(join(DIR, f), 'utf8'), { version: '1.1' }).map((d) => {
    assert.deepEqual(d.errors, [], `${f}: ${d.errors.join('; ')}`);
    return d.toJS() as Obj;
  }));
const find = (kind: string, name: string) => {
  const d = docs.find((o) => o.kind === kind && o.metadata.name === name);
  assert.ok(d, `no ${kind} ${name}`);
  return d;
};

describe('Kubernetes manifests', () => {
  it('every object has apiVersion, kind and a name in the bpfleet namespace', () => {
    for (const d of docs) {
      assert.ok(d.apiVersion && d.kind && d.metadata?.name, JSON.stringify(d).slice(0, 80));
      if (d.kind !== 'Namespace') assert.equal(d.metadata.namespace, 'bpfleet', `${d.kind} ${d.metadata.name}`);
    }
  });

  it('every object validates against the Kubernetes schemas of its kind', () => {
    const models: Record<string, new (data: any) => { validate(): void }> = { Namespace, ServiceAccount, ConfigMap, Secret, Service, Deployment, DaemonSet };
    for (const d of docs) {
      const Model = models[d.kind];
      assert.ok(Model, `${d.kind} ${d.metadata.name}: no schema known for this kind`);
      assert.doesNotThrow(() => new Model(d).validate(), `${d.kind} ${d.metadata.name}`);
    }
  });

  it('the agent: host network, not privileged, exactly the four capabilities, pins on the host bpffs', () => {
    const spec = find('DaemonSet', 'bpfleet-agent').spec.template.spec;
    assert.equal(spec.hostNetwork, true);
    assert.equal(spec.automountServiceAccountToken, false);
    const c = spec.containers[0];
    assert.equal(c.securityContext.privileged, false);
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(c.securityContext.capabilities, { drop: ['ALL'], add: ['BPF', 'NET_ADMIN', 'PERFMON', 'SYS_ADMIN'] });
    const volumes = new Map(spec.volumes.map((v: any) => [v.name, v]));
    const mount = (path: string) => c.volumeMounts.find((m: any) => m.mountPath === path);
    assert.equal((volumes.get(mount('/sys/fs/bpf').name) as any).hostPath.path, '/sys/fs/bpf');
    assert.equal((volumes.get(mount('/sys/fs/cgroup').name) as any).hostPath.path, '/sys/fs/cgroup');
    assert.ok(!docs.some((d) => d.kind === 'PodDisruptionBudget'));
  });

  it('the control plane: 3 replicas, a Service, no capabilities, not root', () => {
    const d = find('Deployment', 'bpfleet-control');
    assert.equal(d.spec.replicas, 3);
    const spec = d.spec.template.spec;
    assert.equal(spec.securityContext.runAsNonRoot, true);
    assert.deepEqual(spec.containers[0].securityContext.capabilities, { drop: ['ALL'] });
    assert.equal(find('Service', 'bpfleet-control').spec.ports[0].port, 50051);
  });

  it('the control plane, not root, can read its certificates: the Secret volume is group-readable by its fsGroup', () => {
    const spec = find('Deployment', 'bpfleet-control').spec.template.spec;
    const user = spec.securityContext.runAsUser;
    assert.ok(Number.isInteger(user) && user !== 0);
    assert.equal(spec.securityContext.fsGroup, spec.securityContext.runAsGroup);
    const tls = spec.volumes.find((v: any) => v.secret);
    assert.ok(spec.containers[0].volumeMounts.some((m: any) => m.name === tls.name));
    // The kubelet makes the files root-owned with the fsGroup as group: only the group bits let the user read them.
    assert.equal(tls.secret.defaultMode & 0o040, 0o040, `defaultMode ${tls.secret.defaultMode.toString(8)} is not group-readable`);
    assert.equal(tls.secret.defaultMode & 0o007, 0, 'the key must not be world-readable');
  });

  it('the ConfigMaps hold valid daemon configs', () => {
    const agent = YAML.parse(find('ConfigMap', 'bpfleet-agent').data['agent.yaml']);
    const control = YAML.parse(find('ConfigMap', 'bpfleet-control').data['control.yaml']);
    assert.equal(agentConfigSchema.parse(agent).pinRoot, '/sys/fs/bpf/bpfleet');
    assert.equal(controlConfigSchema.parse({ ...control, id: 'pod-0' }).listen, '0.0.0.0:50051');
  });

  it('the images are tagged with the package version', () => {
    const { version } = JSON.parse(readFileSync(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8')) as { version: string };
    for (const [kind, name] of [['DaemonSet', 'bpfleet-agent'], ['Deployment', 'bpfleet-control']] as const) {
      assert.equal(find(kind, name).spec.template.spec.containers[0].image, `bpfleet:${version}`, `${kind} ${name}`);
    }
  });

  it('the Secrets are placeholders, not keys', () => {
    for (const s of docs.filter((d) => d.kind === 'Secret')) {
      for (const v of Object.values(s.stringData as Record<string, string>)) assert.doesNotMatch(v, /BEGIN/);
    }
  });
});
