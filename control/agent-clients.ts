import { credentials, Metadata, type ChannelCredentials } from '@grpc/grpc-js';
import { fromServiceError } from '../common/errors.js';
import { AgentServiceClient, type ApplyResponse, type Intent } from '../proto/gen/bpfleet/v1/agent.js';

/** gRPC clients to the agents, one channel per address, reused across applies. */
export class AgentClients {
  private readonly clients = new Map<string, AgentServiceClient>();

  constructor(private readonly creds: ChannelCredentials = credentials.createInsecure()) {}

  private client(address: string): AgentServiceClient {
    let c = this.clients.get(address);
    if (!c) {
      c = new AgentServiceClient(address, this.creds);
      this.clients.set(address, c);
    }
    return c;
  }

  apply(address: string, intent: Intent, timeoutMs = 30_000): Promise<ApplyResponse> {
    return new Promise((resolve, reject) => {
      this.client(address).apply({ intent }, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err) reject(fromServiceError(err));
        else resolve(res);
      });
    });
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
