import type { Campaign, Etcd3 } from 'etcd3';
import { ELECTION, ROOT } from '../common/keys.js';
import type { Fence } from '../common/etcd/fence.js';

export interface Leadership {
  fence: Fence;
  /** Aborted when leadership is lost: stop every leader-only activity. */
  lost: AbortSignal;
}

/**
 * Campaigns for leadership through etcd (a lease plus a "create if absent" key, the
 * etcd3 client's election). The leader's epoch is its key's create revision: it only
 * grows, and every leader-only write is a transaction that checks it (see Fence).
 */
export class LeaderElector {
  private campaign: Campaign | null = null;
  private current: AbortController | null = null;
  private stopped = false;

  constructor(
    private readonly etcd: Etcd3,
    private readonly identity: string,
    private readonly ttlSeconds: number,
    private readonly onLead: (l: Leadership) => void,
    private readonly onError: (err: unknown) => void,
  ) {}

  start(): void {
    if (this.stopped) return;
    const campaign = this.etcd.namespace(ROOT).election(ELECTION, this.ttlSeconds).campaign(this.identity);
    this.campaign = campaign;
    campaign.on('elected', () => {
      void this.elected(campaign).catch((err) => this.fail(campaign, err));
    });
    campaign.on('error', (err) => this.fail(campaign, err));
  }

  private async elected(campaign: Campaign): Promise<void> {
    const key = await campaign.getCampaignKey();
    const kv = (await this.etcd.get(key).exec()).kvs[0];
    if (!kv) throw new Error(`leader key ${key} vanished right after the election`);
    this.current = new AbortController();
    this.onLead({ fence: { key, epoch: Number(kv.create_revision) }, lost: this.current.signal });
  }

  private fail(campaign: Campaign, err: unknown): void {
    if (campaign !== this.campaign) return;
    this.current?.abort(err);
    this.current = null;
    this.campaign = null;
    this.onError(err);
    campaign.resign().catch(() => undefined);
    if (!this.stopped) setTimeout(() => this.start(), 1000).unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.current?.abort(new Error('controller stopping'));
    await this.campaign?.resign().catch(() => undefined);
  }
}
