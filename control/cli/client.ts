import { userInfo, hostname } from 'node:os';
import { Metadata, type CallOptions, type ClientReadableStream, type ClientUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { BpfleetError, fromServiceError } from '../../common/errors.js';
import { CONTROL_MAX_MESSAGE_BYTES } from '../../common/keys.js';
import { ControlServiceClient, type ControlServiceService } from '../../proto/gen/bpfleet/v1/control.js';
import type { Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import { channelCredentials, type TransportSecurity } from '../../common/tls.js';
import { clientInterceptors } from './tracing.js';

/**
 * The "on behalf of" note sent with every call: BPFLEET_ACTOR, else user@host (CI sets
 * BPFLEET_ACTOR). The server names the certificate's identity in the audit log; this note is
 * free text it records only under --insecure, never used to decide anything.
 */
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

// The service definition the client is generated from: one plain (not overloaded) entry per
// method, with literal stream flags and typed (de)serializers to read the types from.
type Service = typeof ControlServiceService;

/** The ControlService's unary methods, by their name on the generated client. */
export type UnaryMethod = { [K in keyof Service]: Service[K]['responseStream'] extends false ? K : never }[keyof Service];

/** What `method` takes (CreateRolloutRequest for 'createRollout', ...). */
export type RequestOf<M extends UnaryMethod> = Parameters<Service[M]['requestSerialize']>[0];

/** What `method` answers (Rollout for 'createRollout', ...). */
export type ResponseOf<M extends UnaryMethod> = ReturnType<Service[M]['responseDeserialize']>;

type UnaryFn<Req, Res> = (request: Req, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: Res) => void) => ClientUnaryCall;

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

  constructor(readonly server: string, private readonly transport: TransportSecurity, private readonly timeoutMs = 30_000) {
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
      c = new ControlServiceClient(this.address, channelCredentials(this.transport), {
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

  /**
   * Calls a unary method with its own request and response types. Fails over to the next
   * replica on UNAVAILABLE until each was tried once; throws the server's BpfleetError.
   */
  async call<M extends UnaryMethod>(method: M, req: RequestOf<M>): Promise<ResponseOf<M>> {
    for (let tried = 1; ; tried++) {
      try {
        return await this.once(method, req);
      } catch (err) {
        // UNAVAILABLE almost always means the request reached no server. If one died while
        // handling it, a repeat is still safe: a second create is refused (ROLLOUT_ACTIVE)
        // and a repeated verb changes nothing.
        if (!(err instanceof BpfleetError && err.code === 'UNAVAILABLE') || tried >= this.servers.length) throw err;
        this.failover();
      }
    }
  }

  private once<M extends UnaryMethod>(method: M, req: RequestOf<M>): Promise<ResponseOf<M>> {
    const client = this.client;
    // TypeScript cannot pick an overload of a method named by a type parameter; every unary
    // method of the generated client has this one.
    const fn = (client[method] as unknown as UnaryFn<RequestOf<M>, ResponseOf<M>>).bind(client);
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
