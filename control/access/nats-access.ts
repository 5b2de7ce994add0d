/**
 * NATS users and permissions for a fleet, as nats-server configuration. nats-server 2.9 with
 * `tls { verify_and_map: true }` names a client after its verified certificate: the email
 * SANs, then the DNS SANs, then the URI SANs, then the subject, the first that is a
 * configured user (server/auth.go, checkClientTLSCertSubject; seen here: "Using URI found in
 * cert for auth"). bpfleet's users are the SPIFFE IDs, so NATS and gRPC read the same field.
 *
 * The control plane may do everything. A host may publish its own telemetry subject and read
 * the module object store, nothing else: the subjects below are the minimal set a reader
 * (@nats-io/obj 3.4 `Objm.open` + `getBlob`) was found to need against nats-server 2.9.10.
 * Certificates of people (users) map to no NATS user, so they cannot connect.
 */
import { spiffeIdFor } from '../../common/identity.js';
import { ARTIFACT_BUCKET, HOST_NAME_RE, subjects } from '../../common/keys.js';
import { BpfleetError } from '../../common/errors.js';

/** A NATS user and what it may publish and subscribe to; `null` is no restriction. */
export interface NatsUser {
  user: string;
  publish: string[] | null;
  subscribe: string[] | null;
}

export interface NatsAccessPlan {
  trustDomain: string;
  /** Control-plane certificate names (`control` in a local fleet). */
  controlNames: readonly string[];
  hosts: readonly string[];
}

/** The JetStream API subjects a client needs to read objects of `bucket`, and nothing more. */
export function objectReaderSubjects(bucket: string = ARTIFACT_BUCKET): string[] {
  const stream = `OBJ_${bucket}`;
  return [
    '$JS.API.INFO', // jetstreamManager() checks that JetStream is there
    `$JS.API.STREAM.INFO.${stream}`, // Objm.open: the bucket exists
    `$JS.API.STREAM.MSG.GET.${stream}`, // an object's metadata (last message on $O.<bucket>.M.<name>)
    `$JS.API.CONSUMER.CREATE.${stream}.*.$O.${bucket}.C.*`, // an ordered consumer over one object's chunks
    `$JS.FC.${stream}.>`, // its flow-control replies (objects over a few MB)
  ];
}

/** A host's permissions: its telemetry subject, object reads, and replies on its own inbox prefix. */
export function hostNatsUser(trustDomain: string, host: string): NatsUser {
  if (!HOST_NAME_RE.test(host)) throw new BpfleetError('INVALID_ARGUMENT', 'USAGE', `NATS host "${host}": lowercase letters, digits and inner dashes, 1-63 characters`);
  return {
    user: spiffeIdFor(trustDomain, 'host', host),
    publish: [subjects.telemetry(host), ...objectReaderSubjects()],
    subscribe: [`${subjects.inboxPrefix(host)}.>`],
  };
}

export function natsUsers(plan: NatsAccessPlan): NatsUser[] {
  return [
    ...plan.controlNames.map((name) => ({ user: spiffeIdFor(plan.trustDomain, 'control', name), publish: null, subscribe: null })),
    ...plan.hosts.map((host) => hostNatsUser(plan.trustDomain, host)),
  ];
}

/**
 * The `authorization { users = [...] }` block of a nats-server configuration for `users`
 * (strings JSON-quoted, which the NATS config syntax reads as literals, `$` included).
 */
export function natsAuthorizationConfig(users: readonly NatsUser[]): string {
  const list = (l: string[]) => `{ allow: ${JSON.stringify(l)} }`;
  const lines = users.map((u) => {
    const perms = [u.publish && `publish: ${list(u.publish)}`, u.subscribe && `subscribe: ${list(u.subscribe)}`].filter(Boolean);
    return `    { user: ${JSON.stringify(u.user)}${perms.length ? `, permissions: { ${perms.join(', ')} }` : ''} }`;
  });
  return `authorization {\n  users = [\n${lines.join(',\n')}\n  ]\n}\n`;
}
