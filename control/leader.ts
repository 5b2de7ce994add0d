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
  /** The campaign this replica leads with, set before onLead runs so it runs once. */
  private leading: Campaign | null = null;
  private current: AbortController | null = null;
  private stopped = false;
  private watchdog: NodeJS.Timeout | null = null;
  private rechecking = false;

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
    this.watchdog ??= setInterval(() => void this.recheck(), this.ttlSeconds * 1000).unref();
  }

  /**
   * Once a TTL, a campaign that has not led yet asks etcd itself: its key gone means its
   * lease was lost (campaign again); its key the oldest under the election prefix means it
   * leads, whether or not the client's 'elected' event came. The etcd3 client waits for the
   * older keys' deletion through a watch; the chaos run (seed 2026) saw a replica whose
   * predecessor's key was deleted amid member restarts and compactions never hear of it,
   * and no replica led for minutes.
   */
  private async recheck(): Promise<void> {
    const campaign = this.campaign;
    if (!campaign || this.leading === campaign || this.stopped || this.rechecking) return;
    this.rechecking = true;
    try {
      const key = await Promise.race([campaign.getCampaignKey(), new Promise<null>((r) => setTimeout(() => r(null), this.ttlSeconds * 1000).unref())]);
      if (key === null || campaign !== this.campaign || this.leading === campaign) return;
      const prefix = key.slice(0, key.lastIndexOf('/') + 1);
      const [ours, oldest] = await Promise.all([
        this.etcd.get(key).exec(),
        this.etcd.getAll().prefix(prefix).sort('Create', 'Ascend').limit(1).exec(),
      ]);
      if (campaign !== this.campaign || this.leading === campaign) return;
      if (!ours.kvs[0]) {
        this.fail(campaign, new Error(`campaign key ${key} is gone: the lease was lost`));
        return;
      }
      if (oldest.kvs[0]?.key.toString() === key) await this.elected(campaign);
    } catch (err) {
      this.fail(campaign, err);
    } finally {
      this.rechecking = false;
    }
  }

  private async elected(campaign: Campaign): Promise<void> {
    if (this.leading === campaign) return;
    this.leading = campaign;
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
    this.leading = null;
    this.onError(err);
    campaign.resign().catch(() => undefined);
    if (!this.stopped) setTimeout(() => this.start(), 1000).unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.watchdog) clearInterval(this.watchdog);
    this.current?.abort(new Error('controller stopping'));
    await this.campaign?.resign().catch(() => undefined);
  }
}
