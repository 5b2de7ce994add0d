/**
 * The etcd key space, in one place. Every key bpfleet reads or writes is built here so a
 * change of layout is one edit (see docs/ARCHITECTURE.md).
 */
import { createHash } from 'node:crypto';

export const ROOT = '/bpfleet/';

/** Name of the leader election (keys under /bpfleet/election/leader/). */
export const ELECTION = 'leader';

const seg = (s: string): string => encodeURIComponent(s);

/**
 * The name a key holds after `prefix`, e.g. the host of keys.host(h) under keys.hostsPrefix.
 * Keys are read back from etcd, where anyone with access can write: null when the key is
 * not under `prefix`, its rest is empty, holds a '/', or is not valid percent-encoding.
 */
export function nameOf(prefix: string, key: string): string | null {
  if (!key.startsWith(prefix)) return null;
  const rest = key.slice(prefix.length);
  if (!rest || rest.includes('/')) return null;
  try {
    return decodeURIComponent(rest);
  } catch {
    return null;
  }
}

/**
 * One key segment per selector, whatever its size (up to 32 labels of 63+256 characters):
 * "all" for the empty selector, else the first 16 hex digits of the sha256 of its labels,
 * sorted, as JSON. The selector itself is in the value.
 */
export function selectorKey(selector: Readonly<Record<string, string>>): string {
  const labels = Object.entries(selector).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return labels.length ? createHash('sha256').update(JSON.stringify(labels)).digest('hex').slice(0, 16) : 'all';
}

export const keys = {
  /** The election's candidates (etcd3 client layout: election/<name>/<lease hex>); the lowest create revision leads. */
  electionPrefix: `${ROOT}election/${ELECTION}/`,

  hostsPrefix: `${ROOT}hosts/`,
  host: (host: string) => `${ROOT}hosts/${seg(host)}`,

  observedPrefix: `${ROOT}observed/`,
  observed: (host: string) => `${ROOT}observed/${seg(host)}`,

  intentsPrefix: `${ROOT}intents/`,
  intentsOf: (host: string) => `${ROOT}intents/${seg(host)}/`,
  intent: (host: string, attachment: string) => `${ROOT}intents/${seg(host)}/${seg(attachment)}`,

  modulesPrefix: `${ROOT}modules/`,
  moduleVersions: (name: string) => `${ROOT}modules/${seg(name)}/`,
  module: (name: string, version: string) => `${ROOT}modules/${seg(name)}/${seg(version)}`,

  rolloutsPrefix: `${ROOT}rollouts/`,
  rollout: (id: string) => `${ROOT}rollouts/${seg(id)}`,

  /** Each host's progress in a rollout, one key per host, apart from the rollout's record. */
  rolloutHostsPrefix: `${ROOT}rollout-hosts/`,
  rolloutHostsOf: (id: string) => `${ROOT}rollout-hosts/${seg(id)}/`,
  rolloutHost: (id: string, host: string) => `${ROOT}rollout-hosts/${seg(id)}/${seg(host)}`,

  /** Operators' requests on a rollout (pause, resume, ...); only the API writes them. */
  requestsPrefix: `${ROOT}requests/`,
  requests: (rolloutId: string) => `${ROOT}requests/${seg(rolloutId)}`,

  /** One active rollout per module+attachment: this key holds its id while it runs. */
  activeLock: (module: string, attachment: string) => `${ROOT}active/${seg(module)}/${seg(attachment)}`,

  /** Hosts drained or decommissioned (HostDrain); the API writes them, the leader moves their state. */
  drainsPrefix: `${ROOT}drains/`,
  drain: (host: string) => `${ROOT}drains/${seg(host)}`,

  /** Retired module versions: the tombstone that keeps name@version from being rolled out or pushed again. */
  retired: (name: string, version: string) => `${ROOT}retired/${seg(name)}/${seg(version)}`,
  /**
   * The version a succeeded rollout promoted, per module, attachment and selector
   * (selectorKey): the fleet's desired state, which hosts that return or join converge to.
   */
  desiredPrefix: `${ROOT}desired/`,
  desired: (module: string, attachment: string, selector: Readonly<Record<string, string>>) =>
    `${ROOT}desired/${seg(module)}/${seg(attachment)}/${selectorKey(selector)}`,

  auditPrefix: `${ROOT}audit/`,
  audit: (at: Date, id: string) => `${ROOT}audit/${at.toISOString()}-${seg(id)}`,
};

/** NATS subjects and buckets. */
export const subjects = {
  telemetry: (host: string) => `bpfleet.telemetry.${host}`,
  telemetryAll: 'bpfleet.telemetry.*',
  /** Where replies to a host's requests arrive; its NATS user may subscribe only under it. */
  inboxPrefix: (host: string) => `_INBOX_${host}`,
};

/** JetStream object store bucket holding module objects, named by digest hex. */
export const ARTIFACT_BUCKET = 'bpfleet-modules';

/**
 * Largest ControlService message. A rollout carries one progress entry per host (~200 bytes),
 * so gRPC's 4 MiB default ends near 20,000 hosts; 64 MiB keeps GetRollout and WatchRollout
 * working well past the fleets the benchmarks measure.
 */
export const CONTROL_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** Host names are NATS subject tokens and etcd key segments: keep them plain. */
export const HOST_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
