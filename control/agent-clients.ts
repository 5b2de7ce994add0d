import { credentials, Metadata, type ChannelCredentials } from '@grpc/grpc-js';
import { fromServiceError } from '../common/errors.js';
import { tracingInterceptor } from '../common/otel-grpc.js';
import { AgentServiceClient, type ApplyResponse, type Intent } from '../proto/gen/bpfleet/v1/agent.js';

/** Applies in flight at once across the fleet; the rest wait their turn. */
export const MAX_APPLIES_IN_FLIGHT = 512;

/**
 * gRPC clients to the agents, one channel per address, reused across applies. A wave of
 * ten thousand hosts becomes at most MAX_APPLIES_IN_FLIGHT calls at a time, so no call
 * spends its deadline queued behind thousands of others.
 */
export class AgentClients {
  private readonly clients = new Map<string, AgentServiceClient>();
  private inFlight = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly creds: ChannelCredentials = credentials.createInsecure(),
    private readonly maxInFlight = MAX_APPLIES_IN_FLIGHT,
  ) {}

  private client(address: string): AgentServiceClient {
    let c = this.clients.get(address);
    if (!c) {
      c = new AgentServiceClient(address, this.creds, { interceptors: [tracingInterceptor] });
      this.clients.set(address, c);
    }
    return c;
  }

  async apply(address: string, intent: Intent, timeoutMs = 30_000): Promise<ApplyResponse> {
    await this.acquire();
    try {
      return await new Promise((resolve, reject) => {
        this.client(address).apply({ intent }, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
          if (err) reject(fromServiceError(err));
          else resolve(res);
        });
      });
    } finally {
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
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
