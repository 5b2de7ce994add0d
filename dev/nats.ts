/**
 * Real nats-server (Debian, 2.9) with JetStream on loopback (or another local address), one
 * server or a cluster (routes on the same address, one cluster name, clustered JetStream:
 * streams created with replicas 3 survive the loss of one node). restart() keeps the client
 * port, the route port and the store, so a test can take NATS away mid-analysis and bring the
 * same server back.
 * With `tls`, clients must present a certificate from the CA, and each is the user its
 * certificate maps to (`verify_and_map`), with that user's permissions.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTempDir, removeTempDir } from './claims.js';
import { freePorts, LOOPBACK } from './ports.js';
import { findExecutable, getJson, spawnManaged, waitUntilReady, type ManagedProcess } from './processes.js';

const READY_TIMEOUT_MS = 20_000;
const PORT_RETRIES = 3;

/** TLS with mandatory client certificates, each mapped to one of `authorization`'s users. */
export interface NatsTls {
  caPath: string;
  certPath: string;
  keyPath: string;
  /** An `authorization { users = [...] }` block (control/access/nats-access.ts writes one). */
  authorization: string;
}

export interface NatsOptions {
  /** JetStream store; kept on stop(). Default: a temp dir that stop() removes. */
  storeDir?: string;
  /** Echo the server's log lines on stderr. */
  echo?: boolean;
  tls?: NatsTls;
  /** Local IPv4 address the client and monitoring ports bind to; default 127.0.0.1. */
  host?: string;
}

export interface NatsServer {
  /** nats://<host>:<port> (the client's `tls` option decides TLS, not the scheme) */
  readonly url: string;
  readonly port: number;
  /** http://<host>:<monitorPort> (varz, jsz, healthz). */
  readonly monitorUrl: string;
  readonly storeDir: string;
  readonly running: boolean;
  /** The current server process; a new one after restart(). */
  readonly process: ManagedProcess | undefined;
  /** SIGTERM, wait for exit, remove the store if it is ours. Idempotent. */
  stop(): Promise<void>;
  /** Ends the process only (SIGKILL: a crash; SIGTERM: a clean shutdown), keeping port and store. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Stops the process if it runs, then starts it on the same port and store; waits until ready. */
  restart(): Promise<void>;
}

/** Where a cluster member's routes listen and which routes it solicits. */
interface ClusterSpec {
  name: string;
  routePort: number;
  routes: string[];
}

class Server implements NatsServer {
  process: ManagedProcess | undefined;
  private stopped = false;
  cluster: ClusterSpec | undefined;

  constructor(
    private readonly host: string,
    readonly port: number,
    private readonly monitorPort: number,
    readonly storeDir: string,
    private readonly ownsStoreDir: boolean,
    private readonly echo: boolean,
    private readonly tls: NatsTls | undefined,
  ) {}

  get url(): string {
    return `nats://${this.host}:${this.port}`;
  }
  get monitorUrl(): string {
    return `http://${this.host}:${this.monitorPort}`;
  }
  get running(): boolean {
    return this.process?.running ?? false;
  }

  async start(): Promise<void> {
    this.spawn();
    await this.waitReady();
  }

  spawn(): void {
    const bin = findExecutable('nats-server');
    if (!bin) throw new Error('nats-server not found: install nats-server (infra/bootstrap.sh does)');
    const c = this.cluster;
    this.process = spawnManaged({
      name: 'nats',
      command: bin,
      // The monitoring port binds to the -a address too (nats-server's default http host).
      args: ['-a', this.host, '-p', String(this.port), '-m', String(this.monitorPort), '-n', `bpfleet-${this.port}`, '-js', '-sd', this.storeDir,
        ...(c ? ['--cluster_name', c.name, '--cluster', `nats://${this.host}:${c.routePort}`, '--routes', c.routes.join(',')] : []),
        ...(this.tls ? ['-c', this.writeConfig(this.tls)] : [])],
      echo: this.echo,
    });
  }

  async waitReady(): Promise<void> {
    const proc = this.process;
    if (!proc) throw new Error('nats-server is not running');
    // healthz answers ok only once JetStream is up (and, after a restart, has recovered its
    // store; in a cluster, once it has a JetStream meta leader).
    await waitUntilReady(proc, 'nats-server', async () => {
      const body = (await getJson(`${this.monitorUrl}/healthz`)) as { status?: string } | undefined;
      return body?.status === 'ok';
    }, READY_TIMEOUT_MS);
  }

  /** TLS and users go in a config file (flags cannot give permissions); the flags above still set the rest. */
  private writeConfig(tls: NatsTls): string {
    const path = join(this.storeDir, 'bpfleet-nats.conf');
    const q = JSON.stringify;
    writeFileSync(path, `tls {\n  cert_file: ${q(tls.certPath)}\n  key_file: ${q(tls.keyPath)}\n  ca_file: ${q(tls.caPath)}\n  verify_and_map: true\n}\n${tls.authorization}`);
    return path;
  }

  portInUse(): boolean {
    return this.process?.lines().some((l) => l.includes('address already in use')) ?? false;
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.process?.stop({ signal });
  }

  async restart(): Promise<void> {
    if (this.stopped) throw new Error('nats-server was stopped for good');
    await this.process?.stop();
    await this.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.process?.stop();
    if (this.ownsStoreDir) removeTempDir(this.storeDir);
  }
}

/** nats-server with JetStream on random ports of `opts.host` (loopback by default); resolves once it is ready. */
export async function startNats(opts: NatsOptions = {}): Promise<NatsServer> {
  const host = opts.host ?? LOOPBACK;
  for (let attempt = 1; ; attempt++) {
    const [port, monitorPort] = (await freePorts(2, host)) as [number, number];
    const owns = opts.storeDir === undefined;
    const storeDir = opts.storeDir ?? makeTempDir('nats');
    mkdirSync(storeDir, { recursive: true });
    const server = new Server(host, port, monitorPort, storeDir, owns, opts.echo ?? false, opts.tls);
    try {
      await server.start();
      return server;
    } catch (err) {
      const retry = server.portInUse() && attempt < PORT_RETRIES;
      await server.stop();
      if (!retry) throw err;
    }
  }
}

export interface NatsCluster {
  readonly members: NatsServer[];
  /** Every member's client URL, as a daemon's --nats takes them (comma-joined). */
  readonly urls: string[];
  /** Stops every member and removes their stores. */
  stop(): Promise<void>;
}

/**
 * `size` nats-servers with JetStream in one cluster on `opts.host` (loopback by default):
 * each routes to every other over its own route port, with one cluster name. Resolves once
 * every member is healthy (clustered JetStream has a meta leader). Streams the product
 * creates get their replicas from it (control --artifact-replicas).
 */
export async function startNatsCluster(size = 3, opts: Omit<NatsOptions, 'storeDir'> = {}): Promise<NatsCluster> {
  const host = opts.host ?? LOOPBACK;
  for (let attempt = 1; ; attempt++) {
    const ports = await freePorts(3 * size, host);
    const name = `bpfleet-${ports[0]}`;
    const routeUrls = Array.from({ length: size }, (_, i) => `nats://${host}:${ports[3 * i + 2]}`);
    const members = Array.from({ length: size }, (_, i) => {
      const server = new Server(host, ports[3 * i]!, ports[3 * i + 1]!, makeTempDir('nats'), true, opts.echo ?? false, opts.tls);
      server.cluster = { name, routePort: ports[3 * i + 2]!, routes: routeUrls.filter((_, j) => j !== i) };
      return server;
    });
    const stop = async (): Promise<void> => {
      await Promise.all(members.map((m) => m.stop()));
    };
    try {
      for (const m of members) m.spawn();
      await Promise.all(members.map((m) => m.waitReady()));
      return { members, urls: members.map((m) => m.url), stop };
    } catch (err) {
      const retry = members.some((m) => m.portInUse()) && attempt < PORT_RETRIES;
      await stop();
      if (!retry) throw err;
    }
  }
}
