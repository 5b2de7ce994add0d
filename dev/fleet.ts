/**
 * A local fleet on one machine, all real: etcd, nats-server with JetStream, the control
 * plane, and N hosts, each a network namespace with a veth pair, an agent process driving
 * it through the kernel (or the sim, for scale runs), and a bounded UDP traffic source from
 * the root namespace into it. Used by the e2e tests, `npm run demo`, `bpfleet dev` and the
 * benchmarks.
 *
 * Two network modes (docs/ARCHITECTURE.md, "One machine, many hosts"):
 * - 'routed': every agent runs inside its host's namespace and reaches etcd, NATS and the
 *   control plane over the host's management link (mgmt0), at the services address, a
 *   198.18 address of the root namespace. Nothing of the fleet listens on loopback.
 * - 'root': every agent runs in the root namespace with `--netns` and everything talks over
 *   127.0.0.1; for tests whose helpers listen on loopback (an OTLP receiver) or need no
 *   host namespace at all.
 */
import { spawn } from 'node:child_process';
import type { Etcd3, IOptions } from 'etcd3';
import type { ConnectionOptions } from '@nats-io/transport-node';
import { subjects } from '../common/keys.js';
import { etcdClient, natsTls, type ClientTls } from '../common/store-clients.js';
import { join } from 'node:path';
import type { Role } from '../common/identity.js';
import type { ChannelCredentials } from '@grpc/grpc-js';
import { channelCredentials, loadTransport, type TransportSecurity } from '../common/tls.js';
import { CleanupStack } from './cleanup.js';
import { makeTempDir, removeTempDir } from './claims.js';
import { startEtcd, startEtcdCluster, type EtcdCluster, type EtcdServer } from './etcd.js';
import { startNats, startNatsCluster, type NatsCluster, type NatsServer } from './nats.js';
import { createHostNetns, type HostNetns } from './netns.js';
import { LOOPBACK } from './ports.js';
import { createPinRoot, type PinRoot } from './pins.js';
import { createFleetPki, type DevCertificate, type FleetPki } from './pki.js';
import { clientTls, enableEtcdAccess, storeServerTls, storeTlsFlags } from './secure-stores.js';
import { freePort, freePorts } from './ports.js';
import { spawnManaged, type ManagedProcess } from './processes.js';
import { PACKAGE_ROOT, programCommand } from './programs.js';
import { startTraffic, type TrafficSource } from './traffic.js';

/** The checkout (or, run from the installed package, the package) the fleet's programs come from. */
export const REPO = PACKAGE_ROOT;

export interface FleetOptions {
  /** Distinguishes concurrent fleets: netns, pins and host names derive from it. */
  name: string;
  hosts?: number;
  driver?: 'kernel' | 'sim';
  /** UDP packets per second into each host; 0 for none. */
  trafficPps?: number;
  trafficDurationMs?: number;
  telemetryIntervalMs?: number;
  labels?: (index: number) => Record<string, string>;
  echo?: boolean;
  leaderTtlSeconds?: number;
  /** etcd members; more than 1 starts a cluster and gives every daemon all endpoints. */
  etcdMembers?: number;
  /**
   * nats-servers; more than 1 starts a cluster (routes on the services address, clustered
   * JetStream), gives every daemon all of them and has the control plane create the module
   * object store with 3 replicas (fewer with 2 nodes).
   */
  natsNodes?: number;
  /** Extra flags for a host's agent, every time it starts (e.g. a signature policy). */
  agentArgs?: (host: string) => string[];
  /** OTEL_EXPORTER_OTLP_ENDPOINT for the control plane, the agents and `cli()`; none by default. */
  otlpEndpoint?: string;
  /**
   * No PKI: etcd and NATS without TLS, users or permissions (every daemon may do
   * everything), and every daemon and the CLI with --insecure gRPC. Only for benchmarks that
   * measure what security costs. Default false: the fleet has its own PKI (dev/pki.ts) and
   * everything speaks TLS with client certificates.
   */
  insecure?: boolean;
  /** Where agents run and how they reach the services; see the module comment. Default 'root'. */
  network?: FleetNetwork;
  /** Start a new traffic run whenever one ends (each lasts trafficDurationMs), until stop(). */
  trafficRenew?: boolean;
  /**
   * The package root agents run from (dev/programs.ts: its dist/ when it has no sources, a
   * built package); default REPO. startAgent() can name another for one start (an upgrade).
   */
  agentRoot?: string;
}

export type FleetNetwork = 'routed' | 'root';

/** In 'routed' mode each agent has its namespace to itself, so its ports are fixed. */
export const AGENT_PORT = 50061;
export const AGENT_METRICS_PORT = 9464;

export interface FleetHost {
  /** Host name in the fleet (h1, h2, ...). */
  name: string;
  netns: HostNetns;
  /** The address the agent listens on and registers: mgmt0's ('routed') or loopback ('root'). */
  address: string;
  pinRoot: PinRoot;
  cacheDir: string;
  listen: string;
  labels: Record<string, string>;
  agent: ManagedProcess;
  traffic: TrafficSource | null;
  /** The agent's Prometheus endpoint (a free port, kept across restarts). */
  metricsUrl: string;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class LocalFleet {
  readonly hosts: FleetHost[] = [];
  control!: ManagedProcess;
  controlAddress = '';
  /** The control plane's Prometheus endpoint. */
  controlMetricsUrl = '';
  etcd!: EtcdServer;
  /** Set when the fleet runs an etcd cluster (etcdMembers > 1); `etcd` is then its first member. */
  etcdCluster: EtcdCluster | null = null;
  nats!: NatsServer;
  /** Set when the fleet runs a NATS cluster (natsNodes > 1); `nats` is then its first member. */
  natsCluster: NatsCluster | null = null;
  /** The fleet's certificates; created once, at boot, unless the fleet is insecure. */
  pki: FleetPki | null = null;
  /** etcd's root password (auth on), for changing users and roles; null when insecure. */
  etcdRootPassword: string | null = null;
  /**
   * The local address etcd, NATS and the control plane listen on: in 'routed' mode the
   * root-side end of the services link (a 198.18 address), else 127.0.0.1.
   */
  servicesAddress = LOOPBACK;
  /** 'routed' mode: the link (and its empty namespace) that holds servicesAddress. */
  servicesLink: HostNetns | null = null;
  private readonly cleanup = new CleanupStack();
  private stopping = false;

  private constructor(readonly opts: Required<Omit<FleetOptions, 'labels' | 'agentArgs' | 'otlpEndpoint' | 'agentRoot'>> & Pick<FleetOptions, 'labels' | 'agentArgs' | 'otlpEndpoint' | 'agentRoot'>) {}

  static async start(options: FleetOptions): Promise<LocalFleet> {
    const fleet = new LocalFleet({
      hosts: 3, driver: 'kernel', trafficPps: 2000, trafficDurationMs: 10 * 60_000, telemetryIntervalMs: 500,
      echo: false, leaderTtlSeconds: 3, etcdMembers: 1, natsNodes: 1, network: 'root', trafficRenew: false, labels: undefined, insecure: false, ...options,
    });
    try {
      await fleet.boot();
      return fleet;
    } catch (err) {
      await fleet.stop();
      throw err;
    }
  }

  private async boot(): Promise<void> {
    const { opts, cleanup } = this;
    if (opts.network === 'routed') {
      // A host-shaped link claims a free /24 and its root-side address is the services address;
      // its namespace stays empty.
      const link = await createHostNetns(`${opts.name}-svc`);
      this.servicesLink = link;
      cleanup.defer(() => link.destroy(), `destroy ${link.netns}`);
      this.servicesAddress = link.peerAddr;
    }
    const host = this.servicesAddress;
    const hostNames = Array.from({ length: opts.hosts }, (_, i) => `h${i + 1}`);
    // The hosts' namespaces before the PKI: an agent's certificate names its management address.
    const namespaces = new Map<string, HostNetns>();
    for (const name of hostNames) namespaces.set(name, await this.createNetns(name));
    // After the services link: the servers' certificates name the address they serve on.
    const pki = opts.insecure ? null : await this.ensurePki(hostNames, namespaces);
    const tls = pki ? await storeServerTls(pki, hostNames, [host]) : undefined;
    if (opts.etcdMembers > 1) {
      const cluster = await startEtcdCluster(opts.etcdMembers, { echo: opts.echo, tls: tls?.etcd, host });
      this.etcdCluster = cluster;
      this.etcd = cluster.members[0]!;
      cleanup.defer(() => cluster.stop(), 'stop etcd cluster');
    } else {
      this.etcd = await startEtcd({ echo: opts.echo, tls: tls?.etcd, host });
      cleanup.defer(() => this.etcd.stop(), 'stop etcd');
    }
    if (pki) this.etcdRootPassword = await enableEtcdAccess(this.etcdEndpoints.split(','), pki, hostNames);
    if (opts.natsNodes > 1) {
      const cluster = await startNatsCluster(opts.natsNodes, { echo: opts.echo, tls: tls?.nats, host });
      this.natsCluster = cluster;
      this.nats = cluster.members[0]!;
      cleanup.defer(() => cluster.stop(), 'stop nats cluster');
    } else {
      this.nats = await startNats({ echo: opts.echo, tls: tls?.nats, host });
      cleanup.defer(() => this.nats.stop(), 'stop nats');
    }
    await this.startControl();
    for (let i = 1; i <= opts.hosts; i++) await this.addHost(i, namespaces.get(`h${i}`)!);
    await this.waitForHosts(opts.hosts);
  }

  /**
   * The fleet's PKI, created on first use (one CA per fleet, whoever asks first): etcd's,
   * NATS's, the control plane's, the agents' and the CLI users' certificates all chain to it.
   */
  private async ensurePki(hosts: readonly string[], namespaces: ReadonlyMap<string, HostNetns>): Promise<FleetPki> {
    if (this.pki) return this.pki;
    const dir = makeTempDir(`${this.opts.name}-pki`);
    this.cleanup.defer(() => removeTempDir(dir), `remove ${dir}`);
    // Servers name the address they serve on: 127.0.0.1 always, the services address when
    // routed, and each agent its management address.
    const hostSans = new Map([...namespaces].flatMap(([name, netns]) => (netns.management ? [[name, [netns.management.hostAddr]] as const] : [])));
    this.pki = await createFleetPki(dir, { hosts, sans: this.servicesAddress === LOOPBACK ? [] : [this.servicesAddress], hostSans });
    return this.pki;
  }

  /** The flags that present the control plane's or host `as`'s certificate to etcd and NATS; none when insecure. */
  private storeFlags(as?: string): string[] {
    const tls = this.clientTls(as);
    return tls ? storeTlsFlags(tls) : [];
  }

  /**
   * An etcd client of this fleet, as the control plane (default: may read and write
   * /bpfleet/) or as host `as` (that host's permissions). The caller closes it.
   */
  etcdClient(as?: string, options: Omit<IOptions, 'hosts' | 'credentials'> = {}): Etcd3 {
    return etcdClient(this.etcdEndpoints.split(','), this.clientTls(as), options);
  }

  /** NATS connection options of this fleet, as the control plane or as host `as` (its inbox prefix included). */
  natsOptions(as?: string): ConnectionOptions {
    const tls = this.clientTls(as);
    return { servers: this.natsServers.split(','), ...(tls ? { tls: natsTls(tls) } : {}), ...(as ? { inboxPrefix: subjects.inboxPrefix(as) } : {}) };
  }

  private clientTls(as: string | undefined): ClientTls | undefined {
    if (!this.pki) return undefined;
    const cert = as === undefined ? this.pki.control : this.pki.hosts.get(as);
    if (!cert) throw new Error(`no certificate for host ${as} in fleet ${this.opts.name}`);
    return clientTls(this.pki, cert);
  }

  /**
   * Starts a control plane replica (another one, when the fleet has one: `control` and
   * `controlAddress` then name the newest) and waits until it is ready; `root` runs it from
   * another package root (dev/programs.ts), e.g. a newly built package.
   */
  async startControl({ root = REPO }: { root?: string } = {}): Promise<ManagedProcess> {
    const host = this.servicesAddress;
    const [port, metricsPort] = await freePorts(2, host);
    this.controlAddress = `${host}:${port}`;
    this.controlMetricsUrl = `http://${host}:${metricsPort}/metrics`;
    const program = programCommand('bpfleet-control', root);
    this.control = spawnManaged({
      name: `${this.opts.name}-control`,
      command: program.command, args: [...program.args, '--listen', this.controlAddress,
        '--etcd', this.etcdEndpoints, '--nats', this.natsServers, '--id', `${this.opts.name}-control-${port}`,
        ...(this.natsCluster ? ['--artifact-replicas', String(Math.min(3, this.natsCluster.members.length))] : []),
        '--leader-ttl', String(this.opts.leaderTtlSeconds), '--metrics-port', String(metricsPort), '--metrics-host', host,
        ...this.storeFlags(), ...this.tlsFlags(this.pki?.control)],
      env: this.telemetryEnv(), cwd: REPO, echo: this.opts.echo,
    });
    const proc = this.control;
    this.cleanup.defer(() => proc.stop(), 'stop control plane');
    await proc.waitForLine(/control plane ready/, 30_000);
    return proc;
  }

  /** Host `name`'s namespace; in 'routed' mode with its management link to the services address. */
  private async createNetns(name: string): Promise<HostNetns> {
    const netns = await createHostNetns(`${this.opts.name}-${name}`, undefined,
      this.opts.network === 'routed' ? { management: { routes: [this.servicesAddress] } } : {});
    this.cleanup.defer(() => netns.destroy(), `destroy ${netns.netns}`);
    return netns;
  }

  private async addHost(i: number, netns: HostNetns): Promise<void> {
    const { opts, cleanup } = this;
    const name = `h${i}`;
    const routed = opts.network === 'routed';
    const pinRoot = await createPinRoot(`${opts.name}-${name}`);
    cleanup.defer(() => pinRoot.destroy(), `remove ${pinRoot.path}`);
    const cacheDir = makeTempDir(`${opts.name}-${name}-cache`);
    cleanup.defer(() => removeTempDir(cacheDir), `remove ${cacheDir}`);
    const address = routed ? netns.management!.hostAddr : LOOPBACK;
    const host: FleetHost = {
      name, netns, pinRoot, cacheDir, address,
      listen: `${address}:${routed ? AGENT_PORT : await freePort()}`,
      labels: opts.labels?.(i) ?? { role: 'edge', zone: i % 2 ? 'a' : 'b' },
      agent: undefined as unknown as ManagedProcess,
      traffic: null,
      metricsUrl: `http://${address}:${routed ? AGENT_METRICS_PORT : await freePort()}/metrics`,
    };
    this.hosts.push(host);
    await this.startAgent(name);
    if (opts.trafficPps > 0) {
      // Into eth0 over the data link, never mgmt0: the module under test sees all of it.
      const send = (): void => {
        const traffic = startTraffic({ target: netns.hostAddr, port: 9, pps: opts.trafficPps, durationMs: opts.trafficDurationMs });
        host.traffic = traffic;
        if (opts.trafficRenew) void traffic.done.then(() => this.stopping || send());
      };
      send();
      cleanup.defer(() => host.traffic?.stop(), `stop traffic to ${name}`);
    }
  }

  /** The address a host's agent listens on and registers (see FleetHost.address). */
  addressOf(name: string): string {
    return this.host(name).address;
  }

  /** Every etcd endpoint, comma-separated, as the daemons take them. */
  get etcdEndpoints(): string {
    return this.etcdCluster ? this.etcdCluster.endpoints.join(',') : this.etcd.endpoint;
  }

  /** Every NATS server URL, comma-separated, as the daemons take them. */
  get natsServers(): string {
    return this.natsCluster ? this.natsCluster.urls.join(',') : this.nats.url;
  }

  host(name: string): FleetHost {
    const h = this.hosts.find((x) => x.name === name);
    if (!h) throw new Error(`no host ${name} in fleet ${this.opts.name}`);
    return h;
  }

  /**
   * Starts (or restarts) a host's agent process and waits until it is ready; `extra` adds
   * flags and environment for this start only (e.g. the BPFLEET_CRASH_AT test hook), or
   * runs it from another package root (`root`, e.g. a newly built package).
   */
  async startAgent(name: string, extra: { args?: readonly string[]; env?: Record<string, string>; root?: string } = {}): Promise<ManagedProcess> {
    const h = this.host(name);
    const routed = this.opts.network === 'routed';
    const labels = Object.entries(h.labels).map(([k, v]) => `${k}=${v}`).join(',');
    const program = programCommand('bpfleet-agent', extra.root ?? this.opts.agentRoot ?? REPO);
    const agent = spawnManaged({
      name: `${this.opts.name}-${name}-agent`,
      command: program.command,
      args: [...program.args, '--host', name, '--listen', h.listen,
        '--etcd', this.etcdEndpoints, '--nats', this.natsServers, '--driver', this.opts.driver,
        // Inside its namespace the agent drives its own interfaces; from the root one it setns()es.
        ...(routed ? [] : ['--netns', h.netns.netns]),
        '--pin-root', h.pinRoot.path, '--cache-dir', h.cacheDir,
        '--label', labels, '--telemetry-interval', String(this.opts.telemetryIntervalMs), '--lease-ttl', '5',
        '--metrics-port', new URL(h.metricsUrl).port, '--metrics-host', h.address, ...this.storeFlags(name),
        ...this.tlsFlags(this.pki?.hosts.get(name)),
        ...(this.opts.agentArgs?.(name) ?? []), ...(extra.args ?? [])],
      env: { ...this.telemetryEnv(), ...extra.env }, cwd: REPO, echo: this.opts.echo,
      ...(routed ? { netns: h.netns.netns } : {}),
    });
    h.agent = agent;
    this.cleanup.defer(() => agent.stop(), `stop agent ${name}`);
    await agent.waitForLine(/agent ready/, 30_000);
    return agent;
  }

  /** Waits until `count` hosts are registered in etcd (via the CLI, as a user would see them). */
  async waitForHosts(count: number, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.cli(['hosts', '-o', 'json']);
      if (r.code === 0 && ((JSON.parse(r.stdout) as { hosts?: { refused?: string }[] }).hosts ?? []).filter((h) => !h.refused).length >= count) return;
      if (Date.now() > deadline) throw new Error(`only some of ${count} hosts registered after ${timeoutMs} ms: ${r.stdout}${r.stderr}`);
      await new Promise((res) => setTimeout(res, 200));
    }
  }

  /** Runs `bpfleet <args> -o json` and parses its output; a non-zero exit throws. */
  async cliJson<T>(args: readonly string[]): Promise<T> {
    const r = await this.cli([...args, '-o', 'json']);
    if (r.code !== 0) throw new Error(`bpfleet ${args.join(' ')} failed (exit ${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  }

  /** A daemon's TLS flags for `cert` (or --insecure when the fleet runs without TLS). */
  tlsFlags(cert: DevCertificate | undefined): string[] {
    if (!this.pki) return ['--insecure'];
    if (!cert) throw new Error(`fleet ${this.opts.name} has no certificate for this daemon`);
    return ['--tls-ca', this.pki.caPath, '--tls-cert', cert.certPath, '--tls-key', cert.keyPath];
  }

  /**
   * Client credentials for in-process gRPC clients (see common/tls.ts): the fleet's user
   * with `who` as its role (admin by default), or the control plane's own identity (what
   * an agent's Apply answers).
   */
  transport(who: Role | 'control' = 'admin'): TransportSecurity {
    if (!this.pki) return { mode: 'insecure' };
    const cert = who === 'control' ? this.pki.control : this.pki.users[who];
    return loadTransport({ tlsCa: this.pki.caPath, tlsCert: cert.certPath, tlsKey: cert.keyPath }, `fleet ${this.opts.name} ${who}`);
  }

  /** grpc-js channel credentials of transport(`who`). */
  credentials(who: Role | 'control' = 'admin'): ChannelCredentials {
    return channelCredentials(this.transport(who));
  }

  /** Runs the real `bpfleet` CLI against this fleet, as the fleet's user with role `as` (admin by default). */
  cli(args: readonly string[], opts: { stdin?: string; env?: Record<string, string>; as?: Role } = {}): Promise<CliResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [join(REPO, 'bin/bpfleet.mjs'), ...args], {
        cwd: REPO, env: { ...process.env, ...this.clientEnv(opts.as), ...this.telemetryEnv(), ...opts.env },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
      child.stdin.end(opts.stdin ?? '');
    });
  }

  /**
   * The environment that points the `bpfleet` CLI at this fleet as the fleet's user with
   * `role` (admin by default): BPFLEET_SERVER and BPFLEET_CA/CERT/KEY, or BPFLEET_INSECURE
   * when the fleet has no PKI. `bpfleet dev env` prints it.
   */
  clientEnv(role: Role = 'admin'): Record<string, string> {
    const where = { BPFLEET_SERVER: this.controlAddress };
    if (!this.pki) return { ...where, BPFLEET_INSECURE: '1' };
    const user = this.pki.users[role];
    return { ...where, BPFLEET_CA: this.pki.caPath, BPFLEET_CERT: user.certPath, BPFLEET_KEY: user.keyPath };
  }

  /** Trace export for the processes this fleet starts; batches go out every 200 ms, not 5 s. */
  private telemetryEnv(): Record<string, string> {
    return this.opts.otlpEndpoint ? { OTEL_EXPORTER_OTLP_ENDPOINT: this.opts.otlpEndpoint, OTEL_BSP_SCHEDULE_DELAY: '200' } : {};
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.cleanup.runAll();
  }
}
