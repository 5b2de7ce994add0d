import { Server } from '@grpc/grpc-js';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { ArtifactStore } from '../common/artifacts.js';
import { CONTROL_MAX_MESSAGE_BYTES } from '../common/keys.js';
import { BpfleetError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { SignaturePolicy } from '../common/signing.js';
import { etcdClient, natsTls, type StoreTls } from '../common/store-clients.js';
import { addStandardServices } from '../common/grpc-standard.js';
import { channelCredentials, INSECURE_WARNING, serverCredentials, type TransportSecurity } from '../common/tls.js';
import { AgentClients } from './agent-clients.js';
import { TelemetryIngest } from './analysis/ingest.js';
import { TelemetryStore } from './analysis/telemetry-store.js';
import { controlService, controlServiceDefinition } from './api/service.js';
import { guardControlService } from './api/handler.js';
import { RolloutController } from './controller.js';
import { Drainer } from './day2/drainer.js';
import { DrainStore } from './store/drains.js';
import { LeaderElector, type Leadership } from './leader.js';
import { observeFleet } from './metrics.js';
import { AuditLog, type AuditRetention } from './store/audit.js';
import { pruneAuditWhileLeading } from './audit-retention.js';
import { HostDirectory } from '../common/etcd/hosts.js';
import { IntentStore } from '../common/etcd/intents.js';
import { ModuleRegistry } from '../common/etcd/modules.js';
import { buildInfo } from '../common/version.js';
import { RolloutStore } from './store/rollouts.js';
import { DesiredStore } from './store/desired.js';
import { Converger } from './convergence/converger.js';

export interface ControlPlaneConfig {
  /** gRPC listen address for ControlService; loopback by default. */
  listen: string;
  etcdEndpoints: string[];
  natsServers: string[];
  /** Client certificates for etcd and NATS; plain connections without. */
  storeTls?: StoreTls;
  /** Telemetry stamped further ahead of this replica's clock is dropped (ms; default 10 s). */
  telemetryMaxSkewMs?: number;
  /** JetStream replicas of the module object store if this replica creates it (default 1). */
  artifactReplicas?: number;
  /** Unique per replica: shows in the election and the logs. */
  identity: string;
  leaderTtlSeconds: number;
  /**
   * mTLS for the ControlService (client certificates required; roles checked per method)
   * and for the calls to agents (this certificate is the control plane's identity), or
   * explicitly insecure.
   */
  transport: TransportSecurity;
  /** Fleet-wide signature policy: CreateRollout and UndoRollout refuse a module it refuses. */
  signatures?: SignaturePolicy;
  /** How long and how many audit entries the leader keeps (default AUDIT_RETENTION). */
  auditRetention?: AuditRetention;
  log: Logger;
}

export interface RunningControlPlane {
  address: string;
  telemetry: TelemetryStore;
  stop(): Promise<void>;
}

/** One control-plane replica: API always, rollout controller while it leads. */
export async function startControlPlane(cfg: ControlPlaneConfig): Promise<RunningControlPlane> {
  const { log, transport } = cfg;
  if (transport.mode === 'insecure') log.warn(INSECURE_WARNING);
  else if (transport.self.kind !== 'control') {
    throw new BpfleetError('INVALID_ARGUMENT', 'IDENTITY_MISMATCH', `the control plane's certificate names ${transport.self.spiffeId}, not a control identity (spiffe://<trust-domain>/bpfleet/control/<name>)`);
  }
  const etcd = etcdClient(cfg.etcdEndpoints, cfg.storeTls?.etcd);
  const nc: NatsConnection = await connect({
    servers: cfg.natsServers, name: `bpfleet-control-${cfg.identity}`, tls: natsTls(cfg.storeTls?.nats),
    maxReconnectAttempts: -1, waitOnFirstConnect: true, reconnectTimeWait: 500,
  });
  const artifacts = await ArtifactStore.open(nc, { replicas: cfg.artifactReplicas });
  const telemetry = new TelemetryStore();
  const ingest = new TelemetryIngest(telemetry, log, { maxSkewMs: cfg.telemetryMaxSkewMs });
  ingest.start(nc);

  const modules = new ModuleRegistry(etcd);
  const rollouts = new RolloutStore(etcd);
  const hosts = new HostDirectory(etcd, log);
  const audit = new AuditLog(etcd);
  const agents = new AgentClients(channelCredentials(transport));
  const intents = new IntentStore(etcd);
  const drains = new DrainStore(etcd);
  const controller = new RolloutController({
    etcd, rollouts, modules, intents, hosts, audit, agents, telemetry, ingest, log, drains,
  });
  const drainer = new Drainer({ etcd, drains, hosts, intents, rollouts, agents, audit, log });
  const desired = new DesiredStore(etcd, log);
  const converger = new Converger({ hosts, desired, drains, rollouts, intents, agents, audit, log });
  let leading: Leadership | null = null;
  let converging: Promise<void> = Promise.resolve();
  const unobserve = observeFleet({ rollouts, hosts, leading: () => Boolean(leading && !leading.lost.aborted) });
  const elector = new LeaderElector(etcd, cfg.identity, cfg.leaderTtlSeconds,
    (leadership) => {
      leading = leadership;
      controller.lead(leadership).catch((err) => log.error({ err }, 'controller failed to start leading'));
      drainer.lead(leadership).catch((err) => log.error({ err }, 'drainer failed to start leading'));
      void pruneAuditWhileLeading(audit, leadership, log, cfg.auditRetention);
      converging = converger.lead(leadership).catch((err) => log.error({ err }, 'converger stopped'));
    },
    (err) => log.warn({ err: String(err) }, 'leader campaign failed; campaigning again'));

  const server = new Server({
    'grpc.max_send_message_length': CONTROL_MAX_MESSAGE_BYTES,
    'grpc.max_receive_message_length': CONTROL_MAX_MESSAGE_BYTES,
  });
  server.addService(controlServiceDefinition, guardControlService(controlService({ etcd, artifacts, modules, rollouts, hosts, desired, audit, log, signatures: cfg.signatures }), transport, log));
  const standard = addStandardServices(server, ['bpfleet.v1.ControlService']);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(cfg.listen, serverCredentials(transport), (err, p) => (err ? reject(err) : resolve(p))));
  const address = cfg.listen.replace(/:0$/, `:${port}`);
  elector.start();
  log.info({ address, version: buildInfo().version, identity: cfg.identity, tls: transport.mode === 'mtls' ? transport.self.spiffeId : 'off (--insecure)' }, 'control plane ready');

  return {
    address,
    telemetry,
    async stop() {
      unobserve();
      await elector.stop();
      await controller.stop();
      await drainer.stop();
      await converging;
      standard.drain();
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      agents.close();
      await hosts.close();
      ingest.stop();
      await nc.drain().catch(() => undefined);
      etcd.close();
    },
  };
}
