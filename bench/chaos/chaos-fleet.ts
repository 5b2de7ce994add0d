/**
 * The chaos run's fleet: the local fleet (dev/fleet.ts: secured etcd and NATS, kernel hosts
 * in network namespaces) with a 3-member etcd, a 3-node NATS cluster (module objects
 * replicated 3 times) and several control-plane replicas, plus THE SIM DATAPLANE: a sim host
 * pool process (bench/sim-pool/) of a few hundred simulated hosts, which touch no kernel.
 *
 * The pool reaches etcd and NATS with the control plane's certificate: one connection serves
 * every simulated host, and no per-host identity can write hundreds of hosts' keys. The
 * per-host store permissions are what the kernel hosts' agents exercise.
 */
import { LocalFleet, REPO, type CliResult } from '../../dev/fleet.js';
import { freePort } from '../../dev/ports.js';
import { spawnManaged, type ManagedProcess } from '../../dev/processes.js';
import { issue } from '../../control/pki/pki.js';

export interface ChaosFleetOptions {
  name: string;
  kernelHosts: number;
  simHosts: number;
  controlReplicas: number;
  echo?: boolean;
}

export interface ControlReplica {
  process: ManagedProcess;
  address: string;
}

export const SIM_PREFIX = 'sim-';
/** The bad version's sim program drops every packet, as drop-all.c does in the kernel. */
export const BAD_VERSION = '3.0.0-bad';

export class ChaosFleet {
  readonly replicas: ControlReplica[] = [];
  pool!: ManagedProcess;
  poolAddress = '';
  private poolCert!: { certPath: string; keyPath: string };

  private constructor(readonly fleet: LocalFleet, readonly opts: ChaosFleetOptions) {}

  static async start(opts: ChaosFleetOptions): Promise<ChaosFleet> {
    const fleet = await LocalFleet.start({
      name: opts.name, hosts: opts.kernelHosts, driver: 'kernel', etcdMembers: 3, natsNodes: 3,
      trafficPps: 500, trafficDurationMs: 60_000, trafficRenew: true, telemetryIntervalMs: 500, echo: opts.echo ?? false,
    });
    const chaos = new ChaosFleet(fleet, opts);
    try {
      chaos.replicas.push({ process: fleet.control, address: fleet.controlAddress });
      for (let i = 1; i < opts.controlReplicas; i++) await chaos.addControlReplica();
      if (opts.simHosts > 0) {
        const pki = fleet.pki!;
        chaos.poolCert = await issue(pki.dir, { kind: 'host', name: 'sim-pool', sans: [] });
        chaos.poolAddress = `127.0.0.1:${await freePort()}`;
        await chaos.startPool();
      }
      return chaos;
    } catch (err) {
      await chaos.stop();
      throw err;
    }
  }

  /** Starts one more control-plane replica (a new port) and adds it to the list the CLI is given. */
  async addControlReplica(): Promise<ControlReplica> {
    const process = await this.fleet.startControl();
    const r = { process, address: this.fleet.controlAddress };
    this.replicas.push(r);
    return r;
  }

  /** Every replica's address, live or not: the CLI fails over across the list (control/cli/client.ts). */
  servers(): string {
    return this.replicas.filter((r) => r.process.running).map((r) => r.address).join(',');
  }

  cli(args: readonly string[], stdin?: string): Promise<CliResult> {
    return this.fleet.cli(args, { stdin, env: { BPFLEET_SERVER: this.servers(), BPFLEET_ACTOR: 'chaos' } });
  }

  /** (Re)starts the sim host pool on its address; resolves once every simulated host is registered. */
  async startPool(): Promise<ManagedProcess> {
    const { fleet, opts } = this;
    const pki = fleet.pki!;
    const control = pki.control;
    this.pool = spawnManaged({
      name: `${opts.name}-sim-pool`, command: process.execPath, cwd: REPO, echo: opts.echo ?? false,
      args: ['--import', 'tsx', 'bench/sim-pool/main.ts', '--hosts', String(opts.simHosts), '--name-prefix', SIM_PREFIX,
        '--listen', this.poolAddress, '--etcd', fleet.etcdEndpoints, '--nats', fleet.natsServers, '--label', 'role=edge',
        '--telemetry-interval', '1000', '--lease-ttl', '10', '--pps', '1000', '--drop-rate', `${BAD_VERSION}=1`,
        '--tls-ca', pki.caPath, '--tls-cert', this.poolCert.certPath, '--tls-key', this.poolCert.keyPath,
        '--store-ca', pki.caPath, '--store-cert', control.certPath, '--store-key', control.keyPath],
    });
    await this.pool.waitForLine(/sim host pool ready/, 60_000);
    return this.pool;
  }

  /** Every process of the fleet by a stable name, for the memory witness. */
  processes(): { name: string; pid: number | undefined }[] {
    const { fleet } = this;
    return [
      ...this.replicas.map((r, i) => ({ name: `control-${i}`, pid: r.process.running ? r.process.pid : undefined })),
      ...fleet.hosts.map((h) => ({ name: `agent-${h.name}`, pid: h.agent.running ? h.agent.pid : undefined })),
      ...(this.pool ? [{ name: 'sim-pool', pid: this.pool.running ? this.pool.pid : undefined }] : []),
      ...(fleet.etcdCluster?.members ?? [fleet.etcd]).map((m) => ({ name: `etcd-${m.name}`, pid: m.process?.running ? m.process.pid : undefined })),
      ...(fleet.natsCluster?.members ?? [fleet.nats]).map((m, i) => ({ name: `nats-${i}`, pid: m.process?.running ? m.process.pid : undefined })),
    ];
  }

  async stop(): Promise<void> {
    if (this.pool?.running) await this.pool.stop();
    await this.fleet.stop();
  }
}
