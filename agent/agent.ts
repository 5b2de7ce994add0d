import { release } from 'node:os';
import { Server } from '@grpc/grpc-js';
import type { Etcd3 } from 'etcd3';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { ArtifactStore } from '../common/artifacts.js';
import { IntentStore } from '../common/etcd/intents.js';
import { keys } from '../common/keys.js';
import { ModuleRegistry } from '../common/etcd/modules.js';
import type { Logger } from '../common/log.js';
import type { SignaturePolicy } from '../common/signing.js';
import { etcdClient, natsTls, type StoreTls } from '../common/store-clients.js';
import { subjects } from '../common/keys.js';
import { addStandardServices } from '../common/grpc-standard.js';
import { ArtifactCache } from './artifact-cache.js';
import type { SwapCheckpoint } from './crash-hook.js';
import type { DataplaneDriver } from './dataplane/driver.js';
import { IntentWatch } from './intent-watch.js';
import { AttachmentStatus } from '../proto/gen/bpfleet/v1/agent.js';
import { Reconciler, type ModuleSource } from './reconciler.js';
import { Registration } from './registration.js';
import { agentService, agentServiceDefinition, guardAgentService } from './server.js';
import { BpfleetError } from '../common/errors.js';
import { buildInfo } from '../common/version.js';
import { INSECURE_WARNING, serverCredentials, type TransportSecurity } from '../common/tls.js';
import { TelemetryPublisher, type TelemetryClock } from './telemetry-publisher.js';
import { TracedDriver, tracedSink, tracedSource } from './tracing.js';

export interface AgentConfig {
  host: string;
  /** gRPC listen address; loopback or a management address, never 0.0.0.0 by default. */
  listen: string;
  /** Address the control plane dials, when it differs from `listen`. */
  advertise?: string;
  etcdEndpoints: string[];
  natsServers: string[];
  /** Client certificates for etcd and NATS; plain connections without. */
  storeTls?: StoreTls;
  labels: Record<string, string>;
  cacheDir: string;
  telemetryIntervalMs: number;
  leaseTtlSeconds: number;
  driver: DataplaneDriver;
  log: Logger;
  /** What module signatures must satisfy; none checked when absent. */
  signatures?: SignaturePolicy;
  /** Test hook (see crash-hook.ts). */
  checkpoint?: SwapCheckpoint;
  /**
   * How often the agent compares what it reports with what the kernel runs (interfaces
   * deleted, renamed, re-created; the namespace gone), in ms. Default 2000.
   */
  checkIntervalMs?: number;
  /** The clocks telemetry is stamped with; the system's by default. */
  clock?: TelemetryClock;
  /** mTLS for the AgentService (Apply only from the control plane's identity), or explicitly insecure. */
  transport: TransportSecurity;
}

const DEFAULT_CHECK_INTERVAL_MS = 2000;

export interface RunningAgent {
  address: string;
  reconciler: Reconciler;
  /** Re-registers the host with new labels (config reload). */
  setLabels(labels: Record<string, string>): Promise<void>;
  stop(): Promise<void>;
}

/** Wires one host's agent: registration, adoption of pinned programs, gRPC, intents, telemetry. */
export async function startAgent(cfg: AgentConfig): Promise<RunningAgent> {
  const { log, driver, transport } = cfg;
  checkHostIdentity(cfg.host, transport);
  if (transport.mode === 'insecure') log.warn(INSECURE_WARNING);
  const etcd = etcdClient(cfg.etcdEndpoints, cfg.storeTls?.etcd);
  const nc: NatsConnection = await connect({
    servers: cfg.natsServers, name: `bpfleet-agent-${cfg.host}`, tls: natsTls(cfg.storeTls?.nats),
    // Its NATS user may subscribe only under its own inbox prefix (no one else's replies).
    inboxPrefix: subjects.inboxPrefix(cfg.host),
    maxReconnectAttempts: -1, waitOnFirstConnect: true, reconnectTimeWait: 500,
  });
  let store: Promise<ArtifactStore> | null = null;
  const openStore = (): Promise<ArtifactStore> => ArtifactStore.open(nc, { create: false }).catch((err: unknown) => {
    store = null; // a bucket not there yet is not missing for good: the next fetch opens it again
    throw err;
  });
  // Objects an attachment runs stay cached past the limits (a restart adopts them, a
  // rollback may need the previous one again soon).
  const running = (): ReadonlySet<string> => new Set(reconciler.state().attachments.flatMap((a) => (a.module?.digest ? [a.module.digest] : [])));
  const cache = new ArtifactCache(cfg.cacheDir, () => (store ??= openStore()), running);
  const registry = new ModuleRegistry(etcd);
  const source: ModuleSource = {
    module: (name, version) => registry.get(name, version),
    object: (digest) => cache.get(digest),
  };
  const server = new Server();
  const registration = new Registration(etcd, {
    name: cfg.host, labels: cfg.labels, kernel: release(),
    capabilities: driver.capabilities(), registeredAt: new Date().toISOString(), agentVersion: buildInfo().version,
  }, cfg.leaseTtlSeconds, log);
  const traced = new TracedDriver(driver);
  const reconciler = new Reconciler(cfg.host, traced, tracedSource(source, cache), tracedSink(registration), undefined, {
    signatures: cfg.signatures, checkpoint: cfg.checkpoint, leaderEpoch: () => currentLeaderEpoch(etcd),
  });
  const prior = await registration.lastReported();
  const adopted = await reconciler.adopt(prior?.attachments ?? []);
  const adoptedStates = new Map(reconciler.state().attachments.map((a) => [a.attachment, a]));
  for (const r of adopted) {
    const fields = { attachment: r.attachment, progId: r.progId, module: `${r.name}@${r.version}` };
    const state = adoptedStates.get(r.attachment);
    if (state?.status === AttachmentStatus.ATTACHMENT_STATUS_UNVERIFIED) {
      log.warn({ ...fields, reason: state.reason }, `adopted running program fails the signature policy; left running, reported UNVERIFIED: ${state.message}`);
    } else {
      log.info(fields, 'adopted running program');
    }
  }

  server.addService(agentServiceDefinition, guardAgentService(agentService(reconciler, log), transport, log));
  const standard = addStandardServices(server, ['bpfleet.v1.AgentService']);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(cfg.listen, serverCredentials(transport), (err, p) => (err ? reject(err) : resolve(p))));
  const address = cfg.advertise ?? cfg.listen.replace(/:0$/, `:${port}`);
  await registration.start(address);
  const watch = new IntentWatch(new IntentStore(etcd), reconciler, log);
  await watch.start();
  const telemetry = new TelemetryPublisher(nc, reconciler, driver, cfg.telemetryIntervalMs, log, (a) => traced.telemetryContext(a), cfg.clock);
  telemetry.start();
  let checking: Promise<void> | null = null;
  const checker = setInterval(() => {
    // One check at a time: a slow one (a busy kernel lock) is not stacked on.
    checking ??= reconciler.recheck().then(
      (changed) => { if (changed.length) log.warn({ attachments: changed, state: reconciler.state().attachments.filter((a) => changed.includes(a.attachment)) }, 'kernel state changed under running programs'); },
      (err: unknown) => log.error({ err }, 'check of running programs failed'),
    ).finally(() => { checking = null; });
  }, cfg.checkIntervalMs ?? DEFAULT_CHECK_INTERVAL_MS);
  checker.unref();
  log.info({ host: cfg.host, address, version: buildInfo().version, driver: driver.kind, capabilities: driver.capabilities() }, 'agent ready');

  return {
    address,
    reconciler,
    setLabels: (labels) => registration.relabel(labels),
    async stop() {
      clearInterval(checker);
      await checking;
      telemetry.stop();
      await watch.stop();
      standard.drain();
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      await registration.stop();
      await driver.close();
      await nc.drain().catch(() => undefined);
      etcd.close();
    },
  };
}

/**
 * The current leader's epoch: the create revision of the oldest key under the election
 * prefix (the etcd3 client's election elects the lowest create revision; control/leader.ts
 * takes the same revision as its epoch). Null when nobody campaigns.
 */
export async function currentLeaderEpoch(etcd: Etcd3): Promise<number | null> {
  const { kvs } = await etcd.getAll().prefix(keys.electionPrefix).sort('Create', 'Ascend').limit(1).exec();
  return kvs[0] ? Number(kvs[0].create_revision) : null;
}

/**
 * An agent's host name is its certificate's: one host's certificate must not serve (and
 * register, and report) as another host. Throws INVALID_ARGUMENT/IDENTITY_MISMATCH otherwise.
 */
export function checkHostIdentity(host: string, transport: TransportSecurity): void {
  if (transport.mode === 'insecure') return;
  const self = transport.self;
  if (self.kind !== 'host' || self.name !== host) {
    throw new BpfleetError('INVALID_ARGUMENT', 'IDENTITY_MISMATCH', `--host ${host}, but the certificate names ${self.spiffeId}; an agent's host name is its certificate's (spiffe://${self.trustDomain}/bpfleet/host/${host})`);
  }
}
