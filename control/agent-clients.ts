import { credentials, Metadata, type ChannelCredentials } from '@grpc/grpc-js';
import { fromServiceError } from '../common/errors.js';
import { tracingInterceptor } from '../common/otel-grpc.js';
import { AgentServiceClient, type ApplyResponse, type Intent } from '../proto/gen/bpfleet/v1/agent.js';

/** Applies in flight at once across the fleet; the rest wait their turn. */
export const MAX_APPLIES_IN_FLIGHT = 512;

/** How many agent channels stay open, and for how long unused. */
export interface ChannelLimits {
  /**
   * Channels open at most (default 1024, twice MAX_APPLIES_IN_FLIGHT, so there is always an
   * idle one to close); opening one more closes the least recently used idle channel.
   */
  maxChannels: number;
  /** A channel with no call for this long is closed (ms; default 5 min). */
  idleMs: number;
}

export const CHANNEL_LIMITS: ChannelLimits = { maxChannels: 1024, idleMs: 5 * 60_000 };

interface Channel {
  client: AgentServiceClient;
  lastUsed: number;
  calls: number;
}

/**
 * gRPC clients to the agents, one channel per address, reused across applies. A wave of
 * ten thousand hosts becomes at most MAX_APPLIES_IN_FLIGHT calls at a time, so no call
 * spends its deadline queued behind thousands of others. Channels are bounded by
 * `limits`: idle ones are closed (checked every idleMs / 2), and past maxChannels the least
 * recently used idle one makes room.
 */
export class AgentClients {
  /** By address, least recently used first. */
  private readonly channels = new Map<string, Channel>();
  private inFlight = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly creds: ChannelCredentials = credentials.createInsecure(),
    private readonly maxInFlight = MAX_APPLIES_IN_FLIGHT,
    private readonly limits: ChannelLimits = CHANNEL_LIMITS,
    private readonly now: () => number = Date.now,
  ) {
    this.sweeper = setInterval(() => this.closeIdle(), Math.max(1_000, limits.idleMs / 2)).unref();
  }

  /** Channels open now. */
  get open(): number {
    return this.channels.size;
  }

  private channel(address: string): Channel {
    let c = this.channels.get(address);
    if (c) {
      this.channels.delete(address);
    } else {
      if (this.channels.size >= this.limits.maxChannels) this.closeLeastRecentIdle();
      c = { client: new AgentServiceClient(address, this.creds, { interceptors: [tracingInterceptor] }), lastUsed: 0, calls: 0 };
    }
    c.lastUsed = this.now();
    this.channels.set(address, c);
    return c;
  }

  private closeLeastRecentIdle(): void {
    for (const [address, c] of this.channels) {
      if (c.calls > 0) continue;
      c.client.close();
      this.channels.delete(address);
      return;
    }
  }

  /** Closes every channel without a call for `limits.idleMs`. */
  closeIdle(): void {
    const before = this.now() - this.limits.idleMs;
    for (const [address, c] of this.channels) {
      if (c.calls > 0 || c.lastUsed > before) continue;
      c.client.close();
      this.channels.delete(address);
    }
  }

  async apply(address: string, intent: Intent, timeoutMs = 30_000): Promise<ApplyResponse> {
    await this.acquire();
    const c = this.channel(address);
    c.calls++;
    try {
      return await new Promise((resolve, reject) => {
        c.client.apply({ intent }, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
          if (err) reject(fromServiceError(err));
          else resolve(res);
        });
      });
    } finally {
      c.calls--;
      c.lastUsed = this.now();
      this.release();
    }
  }

  private async acquire(): Promise<void> {
    if (this.inFlight < this.maxInFlight) {
      this.inFlight++;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  /** A finished call hands its slot straight to the next waiting one. */
  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.inFlight--;
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const c of this.channels.values()) c.client.close();
    this.channels.clear();
  }
}
