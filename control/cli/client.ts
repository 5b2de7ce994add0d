import { userInfo, hostname } from 'node:os';
import { credentials, Metadata, type ClientReadableStream } from '@grpc/grpc-js';
import { BpfleetError, fromServiceError } from '../../common/errors.js';
import { CONTROL_MAX_MESSAGE_BYTES } from '../../common/keys.js';
import { ControlServiceClient } from '../../proto/gen/bpfleet/v1/control.js';
import type { Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import { clientInterceptors } from './tracing.js';

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

/**
 * The ControlService as promises, with BpfleetErrors instead of raw gRPC errors. `server`
 * may list several replicas ("a:50051,b:50051"): every replica serves the whole API, so a
 * call that finds one unreachable goes to the next.
 */
export class Control {
  private readonly servers: string[];
  private readonly clients = new Map<string, ControlServiceClient>();
  private current = 0;
  private readonly metadata = new Metadata();

  constructor(readonly server: string, private readonly timeoutMs = 30_000) {
    this.servers = server.split(',').map((s) => s.trim()).filter(Boolean);
    if (this.servers.length === 0) throw new BpfleetError('INVALID_ARGUMENT', 'USAGE', '--server: no address given');
    this.metadata.set('bpfleet-actor', actor());
  }

  get replicas(): number {
    return this.servers.length;
  }

  /** The replica calls go to now. */
  get address(): string {
    return this.servers[this.current]!;
  }

  private get client(): ControlServiceClient {
    let c = this.clients.get(this.address);
    if (!c) {
      c = new ControlServiceClient(this.address, credentials.createInsecure(), {
        interceptors: clientInterceptors,
        'grpc.max_receive_message_length': CONTROL_MAX_MESSAGE_BYTES,
      });
      this.clients.set(this.address, c);
    }
    return c;
  }

  /** Moves on to the next listed replica (after one stopped answering). */
  failover(): void {
    this.current = (this.current + 1) % this.servers.length;
  }

  async call<Req, Res>(method: keyof ControlServiceClient, req: Req): Promise<Res> {
    for (let tried = 1; ; tried++) {
      try {
        return await this.once<Req, Res>(method, req);
      } catch (err) {
        // UNAVAILABLE almost always means the request reached no server. If one died while
        // handling it, a repeat is still safe: a second create is refused (ROLLOUT_ACTIVE)
        // and a repeated verb changes nothing.
        if (!(err instanceof BpfleetError && err.code === 'UNAVAILABLE') || tried >= this.servers.length) throw err;
        this.failover();
      }
    }
  }

  private once<Req, Res>(method: keyof ControlServiceClient, req: Req): Promise<Res> {
    const client = this.client;
    const fn = (client[method] as unknown as Unary<Req, Res>).bind(client);
    return new Promise((resolve, reject) => {
      fn(req, this.metadata, { deadline: Date.now() + this.timeoutMs }, (err, res) => (err ? reject(fromServiceError(err)) : resolve(res)));
    });
  }

  watch(id: string): ClientReadableStream<Rollout> {
    return this.client.watchRollout({ id }, this.metadata);
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
