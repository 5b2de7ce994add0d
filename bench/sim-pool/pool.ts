/**
 * THE SIM DATAPLANE FOR SCALE TESTS — no kernel is touched here, and nothing measured with it
 * says anything about BPF. One process plays many hosts: each host is the agent's own
 * Reconciler over its own SimDriver, served by the agent's own AgentService handlers, so
 * the control plane sees what it would see from a fleet of real agents: registrations in
 * etcd, Apply over gRPC, intents converged from etcd, observed state reported to etcd and
 * protobuf telemetry on NATS. What the pool shares, real agents would each have alone: one
 * gRPC server (Apply is routed by intent.host), one etcd lease for every registration, one
 * NATS connection, and transactions that carry many hosts' etcd writes at once.
 */
import { release } from 'node:os';
import { Server, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Etcd3, Lease, Watcher } from 'etcd3';
import { agentService, guardAgentService } from '../../agent/server.js';
import { serverCredentials, type TransportSecurity } from '../../common/tls.js';
import { convergeTo } from '../../agent/intent-watch.js';
import { Reconciler, type ModuleSource } from '../../agent/reconciler.js';
import { TelemetryPublisher } from '../../agent/telemetry-publisher.js';
import type { ModuleArtifact } from '../../agent/dataplane/driver.js';
import type { ModuleBehaviour } from '../../agent/dataplane/sim/host.js';
import { SimDriver } from '../../agent/dataplane/sim/sim-driver.js';
import { buildInfo } from '../../common/version.js';
import { ArtifactStore } from '../../common/artifacts.js';
import { parseAttachment } from '../../common/attachment.js';
import { BpfleetError, toServiceError } from '../../common/errors.js';
import { keys, subjects } from '../../common/keys.js';
import { etcdClient, natsTls, type StoreTls } from '../../common/store-clients.js';
import type { Logger } from '../../common/log.js';
import { scanPrefix } from '../../common/etcd/batch.js';
import { AgentServiceService, GetStateResponse, Intent, type AgentServiceServer } from '../../proto/gen/bpfleet/v1/agent.js';
import { Host } from '../../proto/gen/bpfleet/v1/control.js';
import { Module } from '../../proto/gen/bpfleet/v1/module.js';
import { GroupCommit } from './group-commit.js';

/** Calls that carry no intent (GetState, GetApplyHistory) name their host in this header. */
export const HOST_METADATA = 'bpfleet-host';

export interface SimHostPoolOptions {
  hosts: number;
  /** Host i (1-based) is named `${namePrefix}${i}`. */
  namePrefix: string;
  labels: (index: number) => Record<string, string>;
  /** gRPC listen address, e.g. 127.0.0.1:0. */
  listen: string;
  etcdEndpoints: string[];
  natsServers: string[];
  /** 0: no telemetry. */
  telemetryIntervalMs: number;
  leaseTtlSeconds: number;
  /** Packets per second each simulated interface sees. */
  pps: number;
  /** How a module's sim program treats traffic (e.g. a bad version drops some). */
  behaviour?: (artifact: ModuleArtifact) => ModuleBehaviour;
  /** Attached on every host before it registers, as if an earlier agent had pinned it. */
  preinstall?: { module: string; version: string; attachment: string };
  /** mTLS with one certificate for the whole pool (Apply only from the control plane, as on an agent), or insecure. */
  transport: TransportSecurity;
  /**
   * The pool's one certificate towards etcd and NATS, with the permissions of
   * bench/sim-pool/access.ts; `name` is its name (the etcd user and the NATS inbox prefix).
   * Without it the pool talks plain text, which a secured etcd or NATS refuses.
   */
  storeTls?: StoreTls & { name: string };
  log: Logger;
}

export interface SimHost {
  name: string;
  driver: SimDriver;
  reconciler: Reconciler;
}

export class SimHostPool {
  readonly hosts = new Map<string, SimHost>();
  address = '';
  private readonly etcd: Etcd3;
  private nc!: NatsConnection;
  private readonly writes: GroupCommit;
  private readonly server = new Server();
  private lease: Lease | null = null;
  private intentWatcher: Watcher | null = null;
  private readonly publishers: TelemetryPublisher[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private stopped = false;

  private constructor(private readonly opts: SimHostPoolOptions) {
    this.etcd = etcdClient(opts.etcdEndpoints, opts.storeTls?.etcd);
    this.writes = new GroupCommit(this.etcd);
  }

  static async start(opts: SimHostPoolOptions): Promise<SimHostPool> {
    if (!(Number.isInteger(opts.hosts) && opts.hosts >= 1)) throw new RangeError(`sim host pool: ${opts.hosts} hosts; it needs at least one`);
    const pool = new SimHostPool(opts);
    try {
      await pool.boot();
      return pool;
    } catch (err) {
      await pool.stop();
      throw err;
    }
  }

  private async boot(): Promise<void> {
    const { opts } = this;
    this.nc = await connect({
      servers: opts.natsServers, name: 'bpfleet-sim-host-pool', maxReconnectAttempts: -1, waitOnFirstConnect: true,
      tls: natsTls(opts.storeTls?.nats), ...(opts.storeTls ? { inboxPrefix: subjects.inboxPrefix(opts.storeTls.name) } : {}),
    });
    const source = this.moduleSource();
    for (let i = 1; i <= opts.hosts; i++) {
      const name = `${opts.namePrefix}${i}`;
      const driver = new SimDriver({ pps: opts.pps, behaviour: opts.behaviour });
      const sink = { report: (state: GetStateResponse) => this.writes.put(keys.observed(name), JSON.stringify(GetStateResponse.toJSON(state))) };
      this.hosts.set(name, { name, driver, reconciler: new Reconciler(name, driver, source, sink) });
    }
    if (opts.preinstall) await this.preinstall(source, opts.preinstall);
    await Promise.all([...this.hosts.values()].map((h) => h.reconciler.adopt([])));

    this.server.addService(AgentServiceService, guardAgentService(this.routedService(), opts.transport, opts.log));
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(opts.listen, serverCredentials(opts.transport), (err, p) => (err ? reject(err) : resolve(p))));
    this.address = opts.listen.replace(/:0$/, `:${port}`);
    await this.register();
    await this.watchIntents();
    if (opts.telemetryIntervalMs > 0) this.startTelemetry();
  }

  /** Module records are immutable and objects content-addressed: one fetch serves every host. */
  private moduleSource(): ModuleSource {
    const modules = new Map<string, Promise<Module | null>>();
    const objects = new Map<string, Promise<Uint8Array>>();
    let store: Promise<ArtifactStore> | null = null;
    return {
      module: (name, version) => {
        const key = `${name}@${version}`;
        let m = modules.get(key);
        if (!m) {
          m = this.etcd.get(keys.module(name, version)).string().then((t) => (t === null ? null : Module.fromJSON(JSON.parse(t))));
          modules.set(key, m);
          // Not found yet may mean not pushed yet: ask again next time.
          void m.then((v) => v ?? modules.delete(key), () => modules.delete(key));
        }
        return m;
      },
      object: (digest) => {
        let o = objects.get(digest);
        if (!o) {
          o = (store ??= ArtifactStore.open(this.nc, { create: false })).then((s) => s.get(digest));
          objects.set(digest, o);
          void o.catch(() => objects.delete(digest));
        }
        return o;
      },
    };
  }

  private async preinstall(source: ModuleSource, p: NonNullable<SimHostPoolOptions['preinstall']>): Promise<void> {
    const module = await source.module(p.module, p.version);
    if (!module) throw new Error(`preinstall: module ${p.module}@${p.version} is not in the registry`);
    const artifact = { manifest: module.manifest!, digest: module.digest, object: await source.object(module.digest) };
    const attachment = parseAttachment(p.attachment);
    for (const h of this.hosts.values()) await h.driver.install(attachment, artifact, null);
  }

  /** AgentService for every host on one server: each call goes to its host's own handlers. */
  private routedService(): AgentServiceServer {
    const services = new Map<string, AgentServiceServer>();
    const serviceOf = (host: string): AgentServiceServer | null => {
      let s = services.get(host);
      const h = this.hosts.get(host);
      if (!s && h) {
        s = agentService(h.reconciler, this.opts.log.child({ host }));
        services.set(host, s);
      }
      return s ?? null;
    };
    const first = this.hosts.values().next().value as SimHost;
    const methods = Object.keys(agentService(first.reconciler, this.opts.log)) as (keyof AgentServiceServer)[];
    type Handler = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => void;
    return Object.fromEntries(methods.map((method) => [method, (call: ServerUnaryCall<{ intent?: Intent }, unknown>, callback: sendUnaryData<unknown>) => {
      const host = call.request?.intent?.host || String(call.metadata.get(HOST_METADATA)[0] ?? '');
      const service = serviceOf(host);
      if (!service) {
        callback(toServiceError(new BpfleetError('NOT_FOUND', 'UNKNOWN_HOST',
          `this sim host pool serves no host "${host}"${host ? '' : ` (name it in the intent or the ${HOST_METADATA} header)`}`)) as never);
        return;
      }
      (service[method] as unknown as Handler)(call as ServerUnaryCall<unknown, unknown>, callback);
    }])) as unknown as AgentServiceServer;
  }

  /** Every host's registration on one lease; a lost lease is replaced and all registered again. */
  private async register(): Promise<void> {
    const lease = this.etcd.lease(this.opts.leaseTtlSeconds, { autoKeepAlive: true });
    this.lease = lease;
    lease.on('lost', (err) => {
      if (this.stopped || lease !== this.lease) return;
      this.opts.log.warn({ err: String(err) }, 'pool lease lost; registering every host again');
      const t = setTimeout(() => void this.register().catch((e) => this.opts.log.error({ err: e }, 're-registration failed')), 1000);
      t.unref();
    });
    const id = await lease.grant();
    const registeredAt = new Date().toISOString();
    const kernel = release();
    let i = 0;
    await Promise.all([...this.hosts.values()].map((h) => {
      i++;
      const host: Host = {
        name: h.name, labels: this.opts.labels(i), kernel, capabilities: h.driver.capabilities(),
        registeredAt, agentVersion: `${buildInfo().version}-sim-pool`, address: this.address, attachments: [], lagging: [], refused: '', claimedName: '',
      };
      return this.writes.put(keys.host(h.name), JSON.stringify(Host.toJSON(host)), id);
    }));
  }

  /** One watch over its hosts' intents, each routed to its host: the level-triggered half of Apply. */
  private async watchIntents(): Promise<void> {
    // Only its own hosts' intents: all the pool's identity may read (bench/sim-pool/access.ts).
    const prefix = `${keys.intentsPrefix}${this.opts.namePrefix}`;
    const { kvs, revision } = await scanPrefix(this.etcd, prefix);
    const watcher = await this.etcd.watch().prefix(prefix).startRevision(String(revision + 1)).create();
    this.intentWatcher = watcher;
    watcher.on('put', (kv) => this.converge(kv.value.toString()));
    watcher.on('error', (err) => {
      if (this.stopped) return;
      this.opts.log.warn({ err: String(err) }, 'intent watch failed; reading intents again');
      void watcher.cancel();
      const t = setTimeout(() => void this.watchIntents().catch((e) => this.opts.log.error({ err: e }, 'intent watch restart failed')), 1000);
      t.unref();
    });
    for (const kv of kvs) this.converge(kv.value.toString());
  }

  private converge(text: string): void {
    let intent: Intent;
    try {
      intent = Intent.fromJSON(JSON.parse(text));
    } catch (err) {
      // Anyone with etcd access can write garbage here (the chaos run does): skip it, as agents do.
      this.opts.log.warn({ err: String(err) }, 'intent that does not parse; skipped');
      return;
    }
    const h = this.hosts.get(intent.host);
    if (h) void convergeTo(h.reconciler, intent, this.opts.log.child({ host: h.name }));
  }

  /** Each host reports once per interval; hosts are spread over the interval as real ones drift apart. */
  private startTelemetry(): void {
    const { telemetryIntervalMs: interval, log } = this.opts;
    const n = this.hosts.size;
    let i = 0;
    for (const h of this.hosts.values()) {
      const publisher = new TelemetryPublisher(this.nc, h.reconciler, h.driver, interval, log);
      this.publishers.push(publisher);
      this.timers.push(setTimeout(() => {
        if (!this.stopped) publisher.start();
      }, Math.floor((i++ * interval) / n)));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    for (const p of this.publishers) p.stop();
    await this.intentWatcher?.cancel().catch(() => undefined);
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    await this.writes.flush();
    await this.lease?.revoke().catch(() => undefined);
    for (const h of this.hosts.values()) await h.driver.close();
    await this.nc?.drain().catch(() => undefined);
    this.etcd.close();
  }
}
