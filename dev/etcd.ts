/**
 * Real etcd (the Debian `etcd` binary, 3.4) on loopback (or another local address), one member or a cluster, with the
 * fault injection the HA tests need: kill a member, restart it on the same ports and data.
 * With `tls`, clients and peers talk TLS and must present a certificate from the CA (the
 * client's CN is its etcd user once auth is on); health and metrics stay on a plain-HTTP
 * loopback port of their own, so readiness needs no certificate.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { makeTempDir, removeTempDir } from './claims.js';
import { freePorts, LOOPBACK } from './ports.js';
import { findExecutable, getJson, spawnManaged, waitUntilReady, type ManagedProcess } from './processes.js';

const READY_TIMEOUT_MS = 30_000;
const PORT_RETRIES = 3;

// etcd 3.4 refuses to start on an architecture other than amd64/ppc64le unless this names it.
const GOARCH: Partial<Record<NodeJS.Architecture, string>> = { arm64: 'arm64', arm: 'arm', ia32: '386', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64' };

/** PEM files: the CA that signs clients and peers, and this server's certificate and key. */
export interface EtcdTls {
  caPath: string;
  certPath: string;
  keyPath: string;
}

export interface EtcdOptions {
  /** Kept on stop(): pass one to keep data across servers. Default: a temp dir that stop() removes. */
  dataDir?: string;
  /** Echo the server's log lines on stderr. */
  echo?: boolean;
  /** Client and peer TLS with mandatory client certificates; plain HTTP without. */
  tls?: EtcdTls;
  /** Local IPv4 address the client and peer ports bind to; default 127.0.0.1. */
  host?: string;
}

export interface EtcdMember {
  readonly name: string;
  /** http://<host>:<clientPort>, https:// with TLS */
  readonly endpoint: string;
  readonly clientPort: number;
  readonly peerPort: number;
  /** http://127.0.0.1:<port>: /health and /metrics, plain HTTP even with TLS. */
  readonly metricsUrl: string;
  readonly dataDir: string;
  readonly running: boolean;
  /** The current server process; a new one after restart(). */
  readonly process: ManagedProcess | undefined;
  /** SIGTERM, wait for exit, remove the data dir if it is ours. Idempotent. */
  stop(): Promise<void>;
  /** Ends the process only (SIGKILL: a crash), keeping ports and data for restart(). */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Stops the process if it runs, then starts it on the same ports and data; waits until healthy. */
  restart(): Promise<void>;
}

export type EtcdServer = EtcdMember;

export interface EtcdCluster {
  readonly endpoints: string[];
  readonly members: EtcdMember[];
  /** Stops every member and removes their data. */
  stop(): Promise<void>;
}

interface MemberSpec {
  name: string;
  host: string;
  clientPort: number;
  peerPort: number;
  metricsPort: number;
  initialCluster: string;
  token: string;
  dataDir: string;
  ownsDataDir: boolean;
  echo: boolean;
  tls: EtcdTls | undefined;
}

const scheme = (tls: EtcdTls | undefined): string => (tls ? 'https' : 'http');

function etcdBinary(): string {
  const bin = findExecutable('etcd');
  if (!bin) throw new Error('etcd not found: install etcd-server (infra/bootstrap.sh does)');
  return bin;
}

class Member implements EtcdMember {
  process: ManagedProcess | undefined;
  private stopped = false;

  constructor(private readonly spec: MemberSpec) {}

  get name(): string {
    return this.spec.name;
  }
  get endpoint(): string {
    return `${scheme(this.spec.tls)}://${this.spec.host}:${this.spec.clientPort}`;
  }
  get metricsUrl(): string {
    return `http://${this.spec.host}:${this.spec.metricsPort}`;
  }
  get clientPort(): number {
    return this.spec.clientPort;
  }
  get peerPort(): number {
    return this.spec.peerPort;
  }
  get dataDir(): string {
    return this.spec.dataDir;
  }
  get running(): boolean {
    return this.process?.running ?? false;
  }

  spawn(): void {
    const { name, host, clientPort, peerPort, initialCluster, token, dataDir, tls } = this.spec;
    const client = `${scheme(tls)}://${host}:${clientPort}`;
    const peer = `${scheme(tls)}://${host}:${peerPort}`;
    const env: Record<string, string | undefined> = Object.fromEntries(
      Object.keys(process.env).filter((k) => k.startsWith('ETCD')).map((k) => [k, undefined]),
    );
    const goarch = GOARCH[process.arch];
    if (goarch) env.ETCD_UNSUPPORTED_ARCH = goarch;
    this.process = spawnManaged({
      name: `etcd-${name}`,
      command: etcdBinary(),
      args: [
        '--name', name,
        '--data-dir', dataDir,
        '--listen-client-urls', client,
        '--advertise-client-urls', client,
        '--listen-peer-urls', peer,
        '--initial-advertise-peer-urls', peer,
        '--initial-cluster', initialCluster,
        '--initial-cluster-state', 'new',
        '--initial-cluster-token', token,
        '--listen-metrics-urls', this.metricsUrl,
        '--logger', 'zap',
        '--log-outputs', 'stderr',
        ...(tls ? [
          '--client-cert-auth', '--trusted-ca-file', tls.caPath, '--cert-file', tls.certPath, '--key-file', tls.keyPath,
          '--peer-client-cert-auth', '--peer-trusted-ca-file', tls.caPath, '--peer-cert-file', tls.certPath, '--peer-key-file', tls.keyPath,
        ] : []),
      ],
      env,
      echo: this.spec.echo,
    });
  }

  async waitHealthy(): Promise<void> {
    const proc = this.process;
    if (!proc) throw new Error(`etcd ${this.name} is not running`);
    // /health is true only once the member sees a leader and can serve requests.
    await waitUntilReady(proc, `etcd ${this.name}`, async () => {
      const body = (await getJson(`${this.metricsUrl}/health`)) as { health?: string } | undefined;
      return body?.health === 'true';
    }, READY_TIMEOUT_MS);
  }

  async isLeader(): Promise<boolean> {
    try {
      const res = await fetch(`${this.metricsUrl}/metrics`, { signal: AbortSignal.timeout(1_000) });
      return /^etcd_server_is_leader 1$/m.test(await res.text());
    } catch {
      return false;
    }
  }

  portInUse(): boolean {
    return this.process?.lines().some((l) => l.includes('address already in use')) ?? false;
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.process?.stop({ signal });
  }

  async restart(): Promise<void> {
    if (this.stopped) throw new Error(`etcd ${this.name} was stopped for good`);
    await this.process?.stop();
    this.spawn();
    await this.waitHealthy();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.process?.stop();
    if (this.spec.ownsDataDir) removeTempDir(this.spec.dataDir);
  }
}

function newToken(): string {
  return `bpfleet-${randomBytes(6).toString('hex')}`;
}

function dataDirFor(opts: EtcdOptions): { dataDir: string; ownsDataDir: boolean } {
  if (opts.dataDir === undefined) return { dataDir: makeTempDir('etcd'), ownsDataDir: true };
  mkdirSync(opts.dataDir, { recursive: true });
  return { dataDir: opts.dataDir, ownsDataDir: false };
}

/** One etcd member on random ports of `opts.host` (loopback by default); resolves once it is healthy. */
export async function startEtcd(opts: EtcdOptions = {}): Promise<EtcdServer> {
  const host = opts.host ?? LOOPBACK;
  for (let attempt = 1; ; attempt++) {
    const [clientPort, peerPort, metricsPort] = (await freePorts(3, host)) as [number, number, number];
    const name = 'etcd0';
    const member = new Member({
      name,
      host,
      clientPort,
      peerPort,
      metricsPort,
      initialCluster: `${name}=${scheme(opts.tls)}://${host}:${peerPort}`,
      token: newToken(),
      ...dataDirFor(opts),
      echo: opts.echo ?? false,
      tls: opts.tls,
    });
    try {
      member.spawn();
      await member.waitHealthy();
      return member;
    } catch (err) {
      const retry = member.portInUse() && attempt < PORT_RETRIES;
      await member.stop();
      if (!retry) throw err;
    }
  }
}

/** A cluster of `size` members on `opts.host` (loopback by default), each with its own temp data dir; resolves once all are healthy. */
export async function startEtcdCluster(size = 3, opts: Pick<EtcdOptions, 'echo' | 'tls' | 'host'> = {}): Promise<EtcdCluster> {
  const host = opts.host ?? LOOPBACK;
  for (let attempt = 1; ; attempt++) {
    const ports = await freePorts(2 * size, host);
    const metricsPorts = await freePorts(size, host);
    const names = Array.from({ length: size }, (_, i) => `etcd${i}`);
    const initialCluster = names.map((n, i) => `${n}=${scheme(opts.tls)}://${host}:${ports[2 * i + 1]}`).join(',');
    const token = newToken();
    const members = names.map((name, i) => new Member({
      name,
      host,
      clientPort: ports[2 * i]!,
      peerPort: ports[2 * i + 1]!,
      metricsPort: metricsPorts[i]!,
      initialCluster,
      token,
      ...dataDirFor({}),
      echo: opts.echo ?? false,
      tls: opts.tls,
    }));
    // One by one, leader first: a leader stopping hands leadership to a connected peer and
    // waits for it, so stopping all at once makes it wait seconds for a peer that is also leaving.
    const stopAll = async (): Promise<void> => {
      for (;;) {
        const left = members.filter((m) => m.running);
        if (left.length === 0) break;
        const leaders = await Promise.all(left.map((m) => m.isLeader()));
        await left[Math.max(0, leaders.indexOf(true))]!.stop();
      }
      await Promise.all(members.map((m) => m.stop()));
    };
    try {
      for (const m of members) m.spawn();
      await Promise.all(members.map((m) => m.waitHealthy()));
      return { endpoints: members.map((m) => m.endpoint), members, stop: stopAll };
    } catch (err) {
      const retry = members.some((m) => m.portInUse()) && attempt < PORT_RETRIES;
      await stopAll();
      if (!retry) throw err;
    }
  }
}
