import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import type { Host } from '../../proto/gen/bpfleet/v1/control.js';
import { keys } from '../keys.js';
import type { Logger } from '../log.js';
import { scanPrefix } from './batch.js';
import { codecs } from './codec.js';

const nameIn = (kv: IKeyValue, prefix: string): string => decodeURIComponent(kv.key.toString().slice(prefix.length));

/**
 * The fleet as etcd knows it: registrations (alive while the agent's lease is) joined with
 * what each agent last reported running.
 *
 * Kept in memory and current through a watch: the controller asks for the fleet on every
 * pass, and reading ten thousand registrations each time would cost more than the pass.
 * The first call reads both prefixes at one revision and watches from the next, so no
 * change is missed or seen twice; a failed watch (e.g. after a compaction) reads again.
 */
export class HostDirectory {
  // Raw values by host name, decoded only when the host is next listed: an agent reports
  // several times per apply, the controller lists the fleet once per pass.
  private readonly registered = new Map<string, string>();
  private readonly observed = new Map<string, string>();
  private readonly hosts = new Map<string, Host>();
  private readonly dirty = new Set<string>();
  private names: string[] | null = null;
  private joined: Host[] | null = null;
  private synced: Promise<void> | null = null;
  private watchers: Watcher[] = [];
  private closed = false;
  private readonly collator = new Intl.Collator('en');

  constructor(private readonly etcd: Etcd3, private readonly log?: Logger) {}

  /** Every registered host, by name. The objects are shared: do not modify them. */
  async list(): Promise<Host[]> {
    if (this.closed) this.synced = null;
    await (this.synced ??= this.sync());
    for (const name of this.dirty) this.rejoin(name);
    this.dirty.clear();
    this.names ??= [...this.hosts.keys()].sort(this.collator.compare);
    return (this.joined ??= this.names.map((n) => this.hosts.get(n)!));
  }

  async get(name: string): Promise<Host | null> {
    await this.list();
    return this.hosts.get(name) ?? null;
  }

  /** Stops watching; list() then reads etcd on every call. */
  async close(): Promise<void> {
    this.closed = true;
    await this.unwatch();
  }

  private async sync(): Promise<void> {
    await this.unwatch();
    const hosts = await scanPrefix(this.etcd, keys.hostsPrefix);
    const observed = await scanPrefix(this.etcd, keys.observedPrefix, hosts.revision);
    this.registered.clear();
    this.observed.clear();
    this.hosts.clear();
    for (const kv of hosts.kvs) this.registered.set(nameIn(kv, keys.hostsPrefix), kv.value.toString());
    for (const kv of observed.kvs) this.observed.set(nameIn(kv, keys.observedPrefix), kv.value.toString());
    for (const name of this.registered.keys()) this.dirty.add(name);
    this.changed(true);
    if (this.closed) return;
    const from = String(hosts.revision + 1);
    this.watchers = await Promise.all([this.watch(keys.hostsPrefix, this.registered, from), this.watch(keys.observedPrefix, this.observed, from)]);
  }

  private async watch(prefix: string, values: Map<string, string>, from: string): Promise<Watcher> {
    const watcher = await this.etcd.watch().prefix(prefix).startRevision(from).create();
    const membership = values === this.registered;
    watcher.on('put', (kv) => {
      const name = nameIn(kv, prefix);
      const added = !values.has(name);
      values.set(name, kv.value.toString());
      this.dirty.add(name);
      this.changed(membership && added);
    });
    watcher.on('delete', (kv) => {
      const name = nameIn(kv, prefix);
      values.delete(name);
      this.dirty.add(name);
      this.changed(membership);
    });
    watcher.on('error', (err) => {
      if (this.closed) return;
      // The client does not recreate a watch the server cancelled: read everything again.
      this.log?.warn({ err: String(err) }, 'host watch failed; reading the fleet again');
      this.synced = this.sync();
      this.synced.catch((e) => {
        this.log?.error({ err: String(e) }, 'reading the fleet failed');
        this.synced = null;
      });
    });
    return watcher;
  }

  private changed(membership: boolean): void {
    this.joined = null;
    if (membership) this.names = null;
  }

  private async unwatch(): Promise<void> {
    const watchers = this.watchers;
    this.watchers = [];
    await Promise.all(watchers.map((w) => w.cancel().catch(() => undefined)));
  }

  private rejoin(name: string): void {
    const registration = this.registered.get(name);
    if (registration === undefined) {
      this.hosts.delete(name);
      return;
    }
    const observed = this.observed.get(name);
    const attachments = observed === undefined ? [] : codecs.observed.decode(observed).attachments;
    this.hosts.set(name, {
      ...codecs.host.decode(registration),
      attachments: attachments.map((a) => ({
        attachment: a.attachment,
        module: a.module?.name ?? '',
        version: a.module?.version ?? '',
        digest: a.module?.digest ?? '',
        progId: a.progId,
      })),
    });
  }
}
