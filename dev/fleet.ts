/**
 * A local fleet on one machine, all real: etcd, nats-server with JetStream, the control
 * plane, and N hosts, each a network namespace with a veth pair, an agent process driving
 * it through the kernel (or the sim, for scale runs), and a bounded UDP traffic source from
 * the root namespace into it. Used by the e2e tests, `npm run demo` and the benchmarks.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import type { Role } from '../common/identity.js';
import type { ChannelCredentials } from '@grpc/grpc-js';
import { channelCredentials, loadTransport, type TransportSecurity } from '../common/tls.js';
import { CleanupStack } from './cleanup.js';
import { makeTempDir, removeTempDir } from './claims.js';
import { startEtcd, startEtcdCluster, type EtcdCluster, type EtcdServer } from './etcd.js';
import { startNats, type NatsServer } from './nats.js';
import { createHostNetns, type HostNetns } from './netns.js';
import { createPinRoot, type PinRoot } from './pins.js';
import { createFleetPki, type DevCertificate, type FleetPki } from './pki.js';
import { freePort, freePorts } from './ports.js';
import { spawnManaged, type ManagedProcess } from './processes.js';
import { startTraffic, type TrafficSource } from './traffic.js';

export const REPO = fileURLToPath(new URL('..', import.meta.url));

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
  /** Extra flags for a host's agent, every time it starts (e.g. a signature policy). */
  agentArgs?: (host: string) => string[];
  /** OTEL_EXPORTER_OTLP_ENDPOINT for the control plane, the agents and `cli()`; none by default. */
  otlpEndpoint?: string;
  /**
   * Run every daemon and the CLI with --insecure instead of mTLS (benchmarks comparing the
   * two); by default the fleet has its own PKI (dev/pki.ts) and everything speaks mTLS.
   */
  insecure?: boolean;
}

export interface FleetHost {
  /** Host name in the fleet (h1, h2, ...). */
  name: string;
  netns: HostNetns;
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

const TSX_NODE = [process.execPath, '--import', 'tsx'] as const;

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
  private readonly cleanup = new CleanupStack();

  /** The fleet's certificates; null when it runs --insecure. */
  pki: FleetPki | null = null;

  private constructor(readonly opts: Required<Omit<FleetOptions, 'labels' | 'agentArgs' | 'otlpEndpoint'>> & Pick<FleetOptions, 'labels' | 'agentArgs' | 'otlpEndpoint'>) {}

  static async start(options: FleetOptions): Promise<LocalFleet> {
    const fleet = new LocalFleet({
      hosts: 3, driver: 'kernel', trafficPps: 2000, trafficDurationMs: 10 * 60_000, telemetryIntervalMs: 500,
      echo: false, leaderTtlSeconds: 3, etcdMembers: 1, labels: undefined, insecure: false, ...options,
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
    if (!opts.insecure) {
      const dir = makeTempDir(`${opts.name}-pki`);
      cleanup.defer(() => removeTempDir(dir), `remove ${dir}`);
      this.pki = await createFleetPki(dir, { hosts: Array.from({ length: opts.hosts }, (_, i) => `h${i + 1}`) });
    }
    if (opts.etcdMembers > 1) {
      const cluster = await startEtcdCluster(opts.etcdMembers, { echo: opts.echo });
      this.etcdCluster = cluster;
      this.etcd = cluster.members[0]!;
      cleanup.defer(() => cluster.stop(), 'stop etcd cluster');
    } else {
      this.etcd = await startEtcd({ echo: opts.echo });
      cleanup.defer(() => this.etcd.stop(), 'stop etcd');
    }
    this.nats = await startNats({ echo: opts.echo });
    cleanup.defer(() => this.nats.stop(), 'stop nats');
    await this.startControl();
    for (let i = 1; i <= opts.hosts; i++) await this.addHost(i);
    await this.waitForHosts(opts.hosts);
  }

  async startControl(): Promise<ManagedProcess> {
    const [port, metricsPort] = await freePorts(2);
    this.controlAddress = `127.0.0.1:${port}`;
    this.controlMetricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    this.control = spawnManaged({
      name: `${this.opts.name}-control`,
      command: TSX_NODE[0], args: [...TSX_NODE.slice(1), 'control/main.ts', '--listen', this.controlAddress,
        '--etcd', this.etcdEndpoints, '--nats', this.nats.url, '--id', `${this.opts.name}-control-${port}`,
        '--leader-ttl', String(this.opts.leaderTtlSeconds), '--metrics-port', String(metricsPort),
        ...this.tlsFlags(this.pki?.control)],
      env: this.telemetryEnv(), cwd: REPO, echo: this.opts.echo,
    });
    const proc = this.control;
    this.cleanup.defer(() => proc.stop(), 'stop control plane');
    await proc.waitForLine(/control plane ready/, 30_000);
    return proc;
  }

  private async addHost(i: number): Promise<void> {
    const { opts, cleanup } = this;
    const name = `h${i}`;
    const netns = await createHostNetns(`${opts.name}-${name}`);
    cleanup.defer(() => netns.destroy(), `destroy ${netns.netns}`);
    const pinRoot = await createPinRoot(`${opts.name}-${name}`);
    cleanup.defer(() => pinRoot.destroy(), `remove ${pinRoot.path}`);
    const cacheDir = makeTempDir(`${opts.name}-${name}-cache`);
    cleanup.defer(() => removeTempDir(cacheDir), `remove ${cacheDir}`);
    const host: FleetHost = {
      name, netns, pinRoot, cacheDir,
      listen: `127.0.0.1:${await freePort()}`,
      labels: opts.labels?.(i) ?? { role: 'edge', zone: i % 2 ? 'a' : 'b' },
      agent: undefined as unknown as ManagedProcess,
      traffic: null,
      metricsUrl: `http://127.0.0.1:${await freePort()}/metrics`,
    };
    this.hosts.push(host);
    await this.startAgent(name);
    if (opts.trafficPps > 0) {
      host.traffic = startTraffic({ target: netns.hostAddr, port: 9, pps: opts.trafficPps, durationMs: opts.trafficDurationMs });
      const traffic = host.traffic;
      cleanup.defer(() => traffic.stop(), `stop traffic to ${name}`);
    }
  }

  /** Every etcd endpoint, comma-separated, as the daemons take them. */
  get etcdEndpoints(): string {
    return this.etcdCluster ? this.etcdCluster.endpoints.join(',') : this.etcd.endpoint;
  }

  host(name: string): FleetHost {
    const h = this.hosts.find((x) => x.name === name);
    if (!h) throw new Error(`no host ${name} in fleet ${this.opts.name}`);
    return h;
  }

  /**
   * Starts (or restarts) a host's agent process and waits until it is ready; `extra` adds
   * flags and environment for this start only (e.g. the BPFLEET_CRASH_AT test hook).
   */
  async startAgent(name: string, extra: { args?: readonly string[]; env?: Record<string, string> } = {}): Promise<ManagedProcess> {
    const h = this.host(name);
    const labels = Object.entries(h.labels).map(([k, v]) => `${k}=${v}`).join(',');
    const agent = spawnManaged({
      name: `${this.opts.name}-${name}-agent`,
      command: TSX_NODE[0],
      args: [...TSX_NODE.slice(1), 'agent/main.ts', '--host', name, '--listen', h.listen,
        '--etcd', this.etcdEndpoints, '--nats', this.nats.url, '--driver', this.opts.driver,
        '--netns', h.netns.netns, '--pin-root', h.pinRoot.path, '--cache-dir', h.cacheDir,
        '--label', labels, '--telemetry-interval', String(this.opts.telemetryIntervalMs), '--lease-ttl', '5',
        '--metrics-port', new URL(h.metricsUrl).port,
        ...this.tlsFlags(this.pki?.hosts.get(name)),
        ...(this.opts.agentArgs?.(name) ?? []), ...(extra.args ?? [])],
      env: { ...this.telemetryEnv(), ...extra.env }, cwd: REPO, echo: this.opts.echo,
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
      if (r.code === 0 && ((JSON.parse(r.stdout) as { hosts?: unknown[] }).hosts ?? []).length >= count) return;
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
   * The environment that points the `bpfleet` CLI at this fleet as the fleet's user with
   * `role` (admin by default): BPFLEET_SERVER and BPFLEET_CA/CERT/KEY, or BPFLEET_INSECURE.
   */
  cliEnv(role: Role = 'admin'): Record<string, string> {
    const where = { BPFLEET_SERVER: this.controlAddress };
    if (!this.pki) return { ...where, BPFLEET_INSECURE: '1' };
    const user = this.pki.users[role];
    return { ...where, BPFLEET_CA: this.pki.caPath, BPFLEET_CERT: user.certPath, BPFLEET_KEY: user.keyPath };
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
        cwd: REPO, env: { ...process.env, ...this.cliEnv(opts.as), ...this.telemetryEnv(), ...opts.env },
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

  /** Trace export for the processes this fleet starts; batches go out every 200 ms, not 5 s. */
  private telemetryEnv(): Record<string, string> {
    return this.opts.otlpEndpoint ? { OTEL_EXPORTER_OTLP_ENDPOINT: this.opts.otlpEndpoint, OTEL_BSP_SCHEDULE_DELAY: '200' } : {};
  }

  async stop(): Promise<void> {
    await this.cleanup.runAll();
  }
}
