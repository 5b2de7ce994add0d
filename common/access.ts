/**
 * Who may call what on a bpfleet gRPC service: the caller's identity is read from the TLS
 * peer certificate grpc-js verified (`call.getAuthContext().sslPeerCertificate`), never from
 * metadata, and checked against one rule per method before the method's handler runs.
 * Deny by default: a method without a rule, a peer without a bpfleet identity, and an
 * identity the rule does not name are all refused.
 */
import { createHash } from 'node:crypto';
import type { sendUnaryData, ServerUnaryCall, ServerWritableStream, ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import { BpfleetError, toServiceError } from './errors.js';
import { authorize, readIdentity, type Identity, type Role } from './identity.js';
import type { Logger } from './log.js';
import type { TransportSecurity } from './tls.js';

/** Who may call one method: the control plane (by its kind), users holding `role` (admin holds every role), or both. */
export interface AccessRule {
  control?: true;
  role?: Role;
}

/** The caller as a handler sees it. */
export interface Caller {
  /** The verified identity; null only when the server runs --insecure. */
  identity: Identity | null;
  /** What the audit log names: the SPIFFE ID, or under --insecure "insecure:" and what the client claimed. */
  actor: string;
}

/** Free-text "on behalf of" note a client may send; never used to decide anything. */
export const ON_BEHALF_OF_METADATA = 'bpfleet-actor';
/** Bound on that note, in characters; longer notes are cut. */
export const MAX_ACTOR_NOTE = 128;

type AnyCall = Pick<ServerUnaryCall<unknown, unknown>, 'getAuthContext' | 'metadata'>;

const callers = new WeakMap<object, Caller>();

/**
 * The caller of a call that went through guardService(). Throws INTERNAL for a call that
 * did not: a handler reached without a check is a wiring bug, not an anonymous caller.
 */
export function callerOf(call: object): Caller {
  const c = callers.get(call);
  if (!c) throw new BpfleetError('INTERNAL', 'INTERNAL', 'handler reached without an access check');
  return c;
}

/** The "on behalf of" note of a call, bounded and stripped of control characters; '' when none. */
export function onBehalfOf(call: Pick<AnyCall, 'metadata'>): string {
  const raw = call.metadata.get(ON_BEHALF_OF_METADATA)[0];
  if (typeof raw !== 'string') return '';
  // eslint-disable-next-line no-control-regex
  return raw.replace(/[\u0000-\u001f\u007f-\u009f]/g, '').slice(0, MAX_ACTOR_NOTE);
}

// Parsing a certificate costs about as much as a whole Apply on the sim dataplane; a peer
// sends the same one on every call. Keyed by the DER's SHA-256 and the trust domain.
const MAX_CACHED_IDENTITIES = 4096;
const identities = new Map<string, ReturnType<typeof readIdentity>>();

/** The identity of a call's verified peer certificate; throws UNAUTHENTICATED/NO_IDENTITY when there is none. */
export function peerIdentity(call: Pick<AnyCall, 'getAuthContext'>, trustDomain: string): Identity {
  const peer = call.getAuthContext()?.sslPeerCertificate;
  if (!peer || !peer.raw) throw new BpfleetError('UNAUTHENTICATED', 'NO_IDENTITY', 'no verified client certificate on this connection');
  const key = `${trustDomain} ${createHash('sha256').update(peer.raw).digest('hex')}`;
  let read = identities.get(key);
  if (!read) {
    read = readIdentity(peer, trustDomain);
    if (identities.size >= MAX_CACHED_IDENTITIES) identities.delete(identities.keys().next().value!);
    identities.set(key, read);
  }
  if (!read.identity) throw new BpfleetError('UNAUTHENTICATED', 'NO_IDENTITY', `the client certificate carries no bpfleet identity: ${read.reason}`);
  return read.identity;
}

/** Whether `rule` admits `identity`; the refusal's words otherwise. */
export function check(rule: AccessRule | undefined, identity: Identity, method: string): BpfleetError | null {
  if (!rule) return new BpfleetError('PERMISSION_DENIED', 'ROLE_REQUIRED', `${method}: no access rule, so nobody may call it`);
  if (rule.control && identity.kind === 'control') return null;
  if (rule.role && authorize(identity, rule.role)) return null;
  if (!rule.role) {
    return new BpfleetError('PERMISSION_DENIED', 'CONTROL_PLANE_ONLY', `${method} answers only the control plane's identity; ${identity.spiffeId} is a ${identity.kind}`);
  }
  const has = identity.kind === 'user' ? `has ${identity.roles.join(', ')}` : `is a ${identity.kind}`;
  return new BpfleetError('PERMISSION_DENIED', 'ROLE_REQUIRED', `${method} needs role ${rule.role} (or admin); ${identity.spiffeId} ${has}`);
}

/**
 * The method names of a generated grpc-js service interface. `keyof` alone is `string`,
 * because the interface extends UntypedServiceImplementation's index signature: a rules
 * table typed with it would compile with a method missing.
 */
export type MethodsOf<S> = keyof { [K in keyof S as string extends K ? never : number extends K ? never : K]: S[K] } & string;

/**
 * Wraps every method of `impl` (a grpc-js service implementation for `service`) so that the
 * caller is identified and checked against `rules[method]` first; a refused call ends with
 * UNAUTHENTICATED or PERMISSION_DENIED and its handler never runs. Refusals are logged
 * (warn) with the caller and the method. Under --insecure every call passes, as "insecure:<note>".
 */
export function guardService<S extends UntypedServiceImplementation>(
  service: ServiceDefinition, impl: S, rules: Readonly<Record<MethodsOf<S>, AccessRule>>,
  transport: TransportSecurity, log: Logger, onRefused?: (method: string, err: BpfleetError) => void,
): S {
  const trustDomain = transport.mode === 'mtls' ? transport.self.trustDomain : '';
  const guarded: UntypedServiceImplementation = {};
  for (const [method, handler] of Object.entries(impl)) {
    const definition = service[method];
    if (!definition) throw new Error(`${method} is not a method of this service`);
    const name = definition.path.split('/').pop()!;
    const admit = (call: AnyCall): BpfleetError | null => {
      if (transport.mode === 'insecure') {
        callers.set(call, { identity: null, actor: `insecure:${onBehalfOf(call) || 'anonymous'}` });
        return null;
      }
      let identity: Identity;
      try {
        identity = peerIdentity(call, trustDomain);
      } catch (err) {
        return err as BpfleetError;
      }
      const refused = check((rules as Readonly<Record<string, AccessRule | undefined>>)[method], identity, name);
      if (refused) return refused;
      callers.set(call, { identity, actor: identity.spiffeId });
      return null;
    };
    const refuse = (err: BpfleetError) => {
      log.warn({ rpc: name, reason: err.reason }, `refused: ${err.message}`);
      onRefused?.(name, err);
    };
    if (definition.responseStream) {
      guarded[method] = (call: ServerWritableStream<unknown, unknown>) => {
        const refused = admit(call);
        if (!refused) return (handler as (c: typeof call) => void)(call);
        refuse(refused);
        call.emit('error', Object.assign(new Error(), toServiceError(refused)));
      };
    } else {
      guarded[method] = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        const refused = admit(call);
        if (!refused) return (handler as (c: typeof call, cb: typeof callback) => void)(call, callback);
        refuse(refused);
        callback(toServiceError(refused) as never);
      };
    }
  }
  return guarded as S;
}
