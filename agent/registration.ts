import type { Etcd3, Lease } from 'etcd3';
import { HostRecords, type Registered } from '../common/etcd/hosts.js';
import type { Logger } from '../common/log.js';
import type { GetStateResponse } from '../proto/gen/bpfleet/v1/agent.js';
import type { StateSink } from './reconciler.js';

/**
 * The host's presence in etcd: its registration lives on a lease, so a dead agent drops
 * out of the fleet by itself. A lost lease is dead for good (etcd3 client): grant a new
 * one and put the registration again.
 */
export class Registration implements StateSink {
  private readonly records: HostRecords;
  private lease: Lease | null = null;
  private address: string | null = null;
  private stopped = false;

  constructor(
    private readonly etcd: Etcd3,
    private host: Omit<Registered, 'attachments' | 'address' | 'lagging'>,
    private readonly ttlSeconds: number,
    private readonly log: Logger,
  ) {
    this.records = new HostRecords(etcd);
  }

  /** Registers the host as reachable at `address` (its AgentService). */
  async start(address: string): Promise<void> {
    const lease = this.etcd.lease(this.ttlSeconds, { autoKeepAlive: true });
    this.lease = lease;
    this.address = address;
    lease.on('lost', (err) => {
      if (this.stopped || lease !== this.lease) return;
      this.log.warn({ err: String(err) }, 'registration lease lost; registering again');
      setTimeout(() => void this.start(address).catch((e) => this.log.error({ err: e }, 're-registration failed')), 1000).unref();
    });
    await this.records.register(lease, { ...this.host, address, attachments: [], lagging: [] });
  }

  /**
   * Registers again with new labels, on the same lease (a config reload): rollouts select
   * hosts by labels, so the control plane sees the change at its next selection.
   */
  async relabel(labels: Record<string, string>): Promise<void> {
    this.host = { ...this.host, labels };
    if (this.lease && this.address !== null) await this.records.register(this.lease, { ...this.host, address: this.address, attachments: [], lagging: [] });
  }

  /** The state the previous agent process reported, to restore its fencing marks. */
  async lastReported(): Promise<GetStateResponse | null> {
    return this.records.lastReported(this.host.name);
  }

  /**
   * Writes `state` as the host's observed state, with its labels: that copy outlives the
   * registration, so a rollout can name a host that is down as selected and skipped.
   */
  async report(state: GetStateResponse): Promise<void> {
    await this.records.report(this.host.name, { ...state, labels: this.host.labels });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.lease?.revoke().catch(() => undefined);
  }
}
