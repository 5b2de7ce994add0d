import type { Etcd3, Lease } from 'etcd3';
import { AttachmentStatus, type AttachmentState, type GetStateResponse } from '../../proto/gen/bpfleet/v1/agent.js';
import type { Host, HostAttachment } from '../../proto/gen/bpfleet/v1/control.js';
import { keys, nameOf } from '../keys.js';
import type { Logger } from '../log.js';
import { codecs } from './codec.js';
import { refusedRegistrations, type RefusedRegistration } from './host-refusals.js';
import { decodeOrSkip, malformed } from './malformed.js';
import { listPrefix, watchPrefix, type Decoder } from './watch.js';

/** A value as text under a key that names a host; throws for any other key (see reportMalformed). */
const underHostName = (prefix: string): Decoder<string> => (text, key) => {
  if (nameOf(prefix, key) === null) throw malformed(`key ${key} does not name a host`);
  return text;
};

/** A registration as an agent writes it: the refusal fields are the control plane's to fill, in ListHosts. */
export type Registered = Omit<Host, 'refused' | 'claimedName'>;

/**
 * One attachment of an agent's report as ListHosts shows it. UNSPECIFIED (an older agent)
 * reads as RUNNING, as the proto says.
 */
export function hostAttachmentOf(a: AttachmentState): HostAttachment {
  return {
    attachment: a.attachment,
    module: a.module?.name ?? '',
    version: a.module?.version ?? '',
    digest: a.module?.digest ?? '',
    progId: a.progId,
    status: a.status === AttachmentStatus.ATTACHMENT_STATUS_BROKEN ? AttachmentStatus.ATTACHMENT_STATUS_BROKEN : AttachmentStatus.ATTACHMENT_STATUS_RUNNING,
    reason: a.status === AttachmentStatus.ATTACHMENT_STATUS_BROKEN ? a.reason : '',
    unverified: a.status === AttachmentStatus.ATTACHMENT_STATUS_UNVERIFIED ? a.reason || 'UNVERIFIED' : '',
  };
}

/**
 * What an agent writes about its host: the registration, on the agent's lease so that a
 * dead agent drops out of the fleet by itself, and the state it last reported.
 */
export class HostRecords {
  constructor(private readonly etcd: Etcd3) {}

  async register(lease: Lease, host: Registered): Promise<void> {
    await lease.put(keys.host(host.name)).value(codecs.host.encode({ ...host, refused: '', claimedName: '' }));
  }

  async report(host: string, state: GetStateResponse): Promise<void> {
    await this.etcd.put(keys.observed(host)).value(codecs.observed.encode(state));
  }

  /** The state the host last reported; null when none or when it does not decode (reported as malformed). */
  async lastReported(host: string): Promise<GetStateResponse | null> {
    const key = keys.observed(host);
    const text = await this.etcd.get(key).string();
    return text === null ? null : decodeOrSkip(key, text, codecs.observed.decode);
  }
}

/**
 * The fleet as etcd knows it: registrations (alive while the agent's lease is) joined with
 * what each agent last reported running.
 *
 * Kept in memory and current through a watch: the controller asks for the fleet on every
 * pass, and reading ten thousand registrations each time would cost more than the pass.
 * The first call reads both prefixes at one revision and watches each from the next, so no
 * change is missed or seen twice; a lost watch reads its prefix again (see watchPrefix).
 */
export class HostDirectory {
  // Raw values by host name, decoded only when the host is next listed: an agent reports
  // several times per apply, the controller lists the fleet once per pass.
  private readonly registered = new Map<string, string>();
  private readonly observed = new Map<string, string>();
  private readonly hosts = new Map<string, Host>();
  // Registrations whose value names another host than their key (see host-refusals.ts), by
  // the key's name: never in `hosts`, so never planned; listed by refused() and listAll().
  private readonly mismatched = new Map<string, Host>();
  private readonly dirty = new Set<string>();
  private names: string[] | null = null;
  private joined: Host[] | null = null;
  private synced: Promise<void> | null = null;
  private following: { stop: AbortController; done: Promise<unknown> } | null = null;
  private closed = false;
  private readonly collator = new Intl.Collator('en');

  constructor(private readonly etcd: Etcd3, private readonly log?: Logger) {}

  /**
   * Every registered host the control plane plans with, by name: refused registrations
   * (refused()) are left out. The objects are shared: do not modify them.
   */
  async list(): Promise<Host[]> {
    if (this.closed) this.synced = null;
    await (this.synced ??= this.sync());
    for (const name of this.dirty) {
      // A registration rewritten in place can leave or join the fleet (refused, or no longer
      // decoding): membership is then known only after the rejoin.
      const member = this.hosts.has(name);
      this.rejoin(name);
      if (this.hosts.has(name) !== member) this.changed(true);
    }
    this.dirty.clear();
    this.names ??= [...this.hosts.keys()].sort(this.collator.compare);
    return (this.joined ??= this.names.map((n) => this.hosts.get(n)!));
  }

  /**
   * Hosts that reported state once but are not registered now (down, or their lease
   * expired), with the labels they last reported (none from an older agent); a report that
   * does not decode is left out. A retired host stays here until its observed key is deleted.
   */
  async departed(): Promise<{ name: string; labels: Record<string, string> }[]> {
    await this.list();
    const gone: { name: string; labels: Record<string, string> }[] = [];
    for (const [name, text] of this.observed) {
      if (this.hosts.has(name)) continue;
      const labels = decodeOrSkip(keys.observed(name), text, codecs.observed.decode, this.log)?.labels;
      if (labels) gone.push({ name, labels });
    }
    return gone.sort((a, b) => this.collator.compare(a.name, b.name));
  }

  async get(name: string): Promise<Host | null> {
    await this.list();
    return this.hosts.get(name) ?? null;
  }

  /** The registrations refused (never planned), in key order, each with its reason. */
  async refused(): Promise<RefusedRegistration[]> {
    await this.list();
    return this.refusals();
  }

  /**
   * What ListHosts shows: the hosts of list() and the refused registrations among them in
   * name order, a refused one under its key's name with `refused` and `claimedName` set.
   */
  async listAll(): Promise<Host[]> {
    const hosts = await this.list();
    const refused = this.refusals().map((r) => ({ ...this.mismatched.get(r.host)!, name: r.host, claimedName: r.claimed, refused: r.reason }));
    if (refused.length === 0) return hosts;
    return [...hosts, ...refused].sort((a, b) => this.collator.compare(a.name, b.name));
  }

  private refusals(): RefusedRegistration[] {
    return refusedRegistrations([...this.mismatched].map(([key, host]) => [key, host.name] as const), (n) => this.registered.has(n));
  }

  /** Stops watching; list() then reads etcd on every call. */
  async close(): Promise<void> {
    this.closed = true;
    const following = this.following;
    this.following = null;
    following?.stop.abort();
    await following?.done;
  }

  private async sync(): Promise<void> {
    const hosts = await listPrefix(this.etcd, keys.hostsPrefix, underHostName(keys.hostsPrefix), undefined, this.log);
    const observed = await listPrefix(this.etcd, keys.observedPrefix, underHostName(keys.observedPrefix), hosts.revision, this.log);
    this.replace(this.registered, keys.hostsPrefix, hosts.items);
    this.replace(this.observed, keys.observedPrefix, observed.items);
    this.changed(true);
    if (this.closed) return;
    const stop = new AbortController();
    const from = hosts.revision + 1;
    this.following = {
      stop,
      done: Promise.all([this.follow(keys.hostsPrefix, this.registered, from, stop.signal), this.follow(keys.observedPrefix, this.observed, from, stop.signal)]),
    };
  }

  private async follow(prefix: string, values: Map<string, string>, fromRevision: number, signal: AbortSignal): Promise<void> {
    // Registrations decide who is in the fleet; a report changes only its own host.
    const membership = values === this.registered;
    for await (const change of watchPrefix(this.etcd, prefix, { signal, fromRevision, log: this.log, decode: underHostName(prefix) })) {
      if (change.kind === 'reset') {
        this.log?.warn({ err: String(change.cause), prefix }, 'host watch failed; reading the fleet again');
        this.replace(values, prefix, change.items);
        this.changed(membership);
        continue;
      }
      // A delete of a key that names no host: its put was skipped, so there is nothing to drop.
      const name = nameOf(prefix, change.key);
      if (name === null) continue;
      const added = !values.has(name);
      if (change.kind === 'put') values.set(name, change.value);
      else values.delete(name);
      this.dirty.add(name);
      this.changed(membership && (change.kind === 'delete' || added));
    }
  }

  /** Replaces what `values` holds with `items` (by whole key); every name it held or holds now is joined again. */
  private replace(values: Map<string, string>, prefix: string, items: ReadonlyMap<string, string>): void {
    for (const name of values.keys()) this.dirty.add(name);
    values.clear();
    for (const [key, value] of items) {
      const name = nameOf(prefix, key)!;
      values.set(name, value);
      this.dirty.add(name);
    }
  }

  private changed(membership: boolean): void {
    this.joined = null;
    if (membership) this.names = null;
  }

  private rejoin(name: string): void {
    const registration = this.registered.get(name);
    // A registration that does not decode leaves the host out of the fleet (reported once
    // per change, as rejoin runs once per change); a report that does not decode leaves its
    // attachments unknown.
    // The refusal fields are the directory's to set, never the writer's.
    const host = registration === undefined ? null : decodeOrSkip(keys.host(name), registration, (text) => ({ ...codecs.host.decode(text), refused: '', claimedName: '' }), this.log);
    this.mismatched.delete(name);
    if (host === null) {
      this.hosts.delete(name);
      return;
    }
    if (host.name !== name) {
      // Refused, never planned: it claims a name its key does not give it.
      this.hosts.delete(name);
      this.mismatched.set(name, host);
      const refusal = this.refusals().find((r) => r.host === name)!;
      this.log?.warn({ key: keys.host(name), claimed: host.name.slice(0, 64), reason: refusal.reason }, `host registration refused: ${refusal.message}`);
      return;
    }
    const observed = this.observed.get(name);
    const attachments = (observed === undefined ? null : decodeOrSkip(keys.observed(name), observed, codecs.observed.decode, this.log))?.attachments ?? [];
    this.hosts.set(name, {
      ...host,
      attachments: attachments.map(hostAttachmentOf),
    });
  }
}
