import { userInfo, hostname } from 'node:os';
import { credentials, Metadata, type ClientReadableStream } from '@grpc/grpc-js';
import { fromServiceError } from '../../common/errors.js';
import { ControlServiceClient } from '../../proto/gen/bpfleet/v1/control.js';
import type { Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';

export const DEFAULT_SERVER = '127.0.0.1:50051';

/** Who the audit log should name: BPFLEET_ACTOR, else user@host (CI sets BPFLEET_ACTOR). */
export function actor(): string {
  if (process.env.BPFLEET_ACTOR) return process.env.BPFLEET_ACTOR;
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // No passwd entry (e.g. some containers): the host name still says where it came from.
  }
  return `${user}@${hostname()}`;
}

type Unary<Req, Res> = (req: Req, md: Metadata, opts: { deadline: number }, cb: (err: unknown, res: Res) => void) => unknown;

/** The ControlService as promises, with BpfleetErrors instead of raw gRPC errors. */
export class Control {
  private readonly client: ControlServiceClient;
  private readonly metadata = new Metadata();

  constructor(readonly server: string, private readonly timeoutMs = 30_000) {
    this.client = new ControlServiceClient(server, credentials.createInsecure());
    this.metadata.set('bpfleet-actor', actor());
  }

  call<Req, Res>(method: keyof ControlServiceClient, req: Req): Promise<Res> {
    const fn = (this.client[method] as unknown as Unary<Req, Res>).bind(this.client);
    return new Promise((resolve, reject) => {
      fn(req, this.metadata, { deadline: Date.now() + this.timeoutMs }, (err, res) => (err ? reject(fromServiceError(err)) : resolve(res)));
    });
  }

  watch(id: string): ClientReadableStream<Rollout> {
    return this.client.watchRollout({ id }, this.metadata);
  }

  close(): void {
    this.client.close();
  }
}
