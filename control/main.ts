import { Command } from 'commander';
import { addSharedOptions, changedFields, printableConfig, refuseUnwired } from '../common/config/daemon.js';
import { createLogger, setLogLevel } from '../common/log.js';
import { CONTROL_CONFIG_PATH, CONTROL_LIVE_FIELDS, CONTROL_UNWIRED_FIELDS, loadControlConfig, type ControlDaemonConfig, type ControlFlags } from './config.js';

const program = addSharedOptions(new Command('bpfleet-control'), CONTROL_CONFIG_PATH, 'BPFLEET_CONTROL_CONFIG', '127.0.0.1:50051')
  .description('bpfleet control plane: the API, and the rollout controller while this replica leads')
  .option('--id <name>', 'replica identity for leader election (default <hostname>-<pid>; env BPFLEET_ID)')
  .option('--leader-ttl <s>', 'leader lease TTL in seconds; failover takes about this long (default 5)')
  .option('--artifact-replicas <n>', 'JetStream replicas of the module object store when it is created: 1, or 3 on a NATS cluster (default 1)')
  .option('--telemetry-max-skew <ms>', 'drop telemetry stamped more than this far ahead of this replica\'s clock, ms (default 300000)')
  .option('--require-signatures', 'fleet-wide policy: refuse to create a rollout of a module not signed by a key in --trusted-keys (before any host is touched)')
  .option('--trusted-keys <dir>', 'directory of ed25519 public keys (*.pem); without --require-signatures, signed modules must verify but unsigned ones pass (env BPFLEET_TRUSTED_KEYS)')
  .addHelpText('after', `
Precedence: ${CONTROL_CONFIG_PATH} (or --config, or BPFLEET_CONTROL_CONFIG) < BPFLEET_* variables < flags.
gRPC needs mutual TLS (--tls-ca/--tls-cert/--tls-key, or grpc.tls in the file; a control
certificate, spiffe://<trust domain>/bpfleet/control/<name>) or an explicit --insecure
(BPFLEET_INSECURE=1).
SIGHUP (systemctl reload) re-reads the config: logLevel applies live; other changes are
reported and need a restart (replica by replica: another replica takes over leadership).`)
  .action(async (opts: ControlFlags) => {
    const { config, file } = loadControlConfig(opts);
    if (opts.printConfig) {
      process.stdout.write(printableConfig(config));
      return;
    }
    refuseUnwired(config, CONTROL_UNWIRED_FIELDS);
    setLogLevel(config.logLevel);
    await run(config, file, opts);
  });

program.command('version')
  .description('print the bpfleet version and the git commit it was built from')
  .action(async () => {
    const { versionLine } = await import('../common/version.js');
    process.stdout.write(`${versionLine('bpfleet-control')}\n`);
  });

async function run(config: ControlDaemonConfig, file: string | null, opts: ControlFlags): Promise<void> {
  const [{ startDaemonTelemetry }, { startControlPlane }, { storeTlsFromConfig, warnPlainStores }, { transportFromConfig }, { TrustedKeys }, { quietIpServerNameWarning }] = await Promise.all([
    import('../common/daemon-telemetry.js'), import('./control-plane.js'), import('../common/store-clients.js'), import('../common/tls.js'), import('../common/signing.js'),
    import('../common/ip-server-name-warning.js'),
  ]);
  quietIpServerNameWarning();
  // Before anything starts: no TLS and no explicit insecure is refused.
  const transport = transportFromConfig(config.grpc, 'bpfleet-control');
  const { signatures: sig } = config;
  const signatures = sig.trustedKeysDir ? { require: sig.require, trusted: TrustedKeys.fromDir(sig.trustedKeysDir) } : undefined;
  const log = createLogger('control').child({ replica: config.id });
  if (file) log.info({ file }, 'config read');
  const storeTls = storeTlsFromConfig(config);
  warnPlainStores(storeTls, log);
  const telemetry = await startDaemonTelemetry('bpfleet-control', config.id, { metricsPort: config.metrics.port, metricsHost: config.metrics.host }, log);
  const cp = await startControlPlane({
    listen: config.listen, etcdEndpoints: config.etcd.endpoints, natsServers: config.nats.servers, storeTls,
    telemetryMaxSkewMs: config.telemetryMaxSkewMs, artifactReplicas: config.artifactReplicas, identity: config.id, leaderTtlSeconds: config.leaderTtlSeconds, transport, signatures, log,
  });
  let running = config;
  process.on('SIGHUP', () => {
    let next: ControlDaemonConfig;
    try {
      next = loadControlConfig(opts).config;
    } catch (err) {
      log.error({ err: (err as Error).message }, 'config reload refused: the running config stays');
      return;
    }
    const changed = changedFields(running, next);
    const needRestart = changed.filter((f) => !CONTROL_LIVE_FIELDS.has(f));
    if (changed.includes('logLevel')) setLogLevel(next.logLevel);
    running = { ...running, logLevel: next.logLevel };
    log.info({ applied: changed.filter((f) => CONTROL_LIVE_FIELDS.has(f)), needRestart }, needRestart.length > 0
      ? 'config reloaded; some changes need a restart (systemctl restart bpfleet-control) and were not applied'
      : 'config reloaded');
  });
  const shutdown = (signal: string) => {
    log.info({ signal }, 'stopping');
    cp.stop().then(() => telemetry.shutdown()).then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

program.parseAsync().catch((err) => {
  process.stderr.write(`bpfleet-control: ${(err as Error).message}\n`);
  process.exit(2);
});
