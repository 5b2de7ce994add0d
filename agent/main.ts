import { Command, InvalidArgumentError } from 'commander';
import { addSharedOptions, changedFields, printableConfig, refuseUnwired } from '../common/config/daemon.js';
import { parseLabels } from '../common/config/load.js';
import { createLogger, setLogLevel } from '../common/log.js';
import { AGENT_CONFIG_PATH, AGENT_LIVE_FIELDS, AGENT_UNWIRED_FIELDS, loadAgentConfig, type AgentDaemonConfig, type AgentFlags } from './config.js';

function labels(value: string, previous: Record<string, string> | undefined): Record<string, string> {
  try {
    return parseLabels(value, previous);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

const program = addSharedOptions(new Command('bpfleet-agent'), AGENT_CONFIG_PATH, 'BPFLEET_AGENT_CONFIG', '127.0.0.1:50061')
  .description('bpfleet agent: loads and atomically swaps eBPF modules on this host as the control plane intends')
  .option('--host <name>', 'host name in the fleet (default: this machine\'s short host name; env BPFLEET_HOST)')
  .option('--advertise <addr>', 'address the control plane dials, if not --listen (env BPFLEET_ADVERTISE)')
  .option('--label <k=v,...>', 'host labels used by rollout selectors (repeatable; replaces the config file\'s labels; env BPFLEET_LABELS)', labels)
  .option('--driver <kind>', 'dataplane: "kernel" (libbpf, the default) or "sim" (in-memory, for scale tests only)')
  .option('--pin-root <dir>', 'bpffs directory for this agent\'s pinned links, programs and maps (default /sys/fs/bpf/bpfleet; env BPFLEET_PIN_ROOT)')
  .option('--netns <name>', 'network namespace whose interfaces this agent drives (the agent itself stays in its own)')
  .option('--cache-dir <dir>', 'local artifact cache, by digest (default /var/cache/bpfleet; env BPFLEET_CACHE_DIR)')
  .option('--telemetry-interval <ms>', 'telemetry report interval in ms (default 1000)')
  .option('--lease-ttl <s>', 'registration lease TTL in seconds (default 10)')
  .option('--require-signatures', 'refuse modules that are not signed by a key in --trusted-keys')
  .option('--trusted-keys <dir>', 'directory of ed25519 public keys (*.pem, from bpfleet keys create); signed modules are checked against them (env BPFLEET_TRUSTED_KEYS)')
  .option('--sim-load-delay <ms>', 'with --driver sim: how long each load takes (stands in for the verifier; tests widen windows with it)')
  .option('--sim-clock-offset <ms>', 'with --driver sim: shift the wall clock its telemetry is stamped with, ms (tests of clock skew)')
  .addHelpText('after', `
Precedence: ${AGENT_CONFIG_PATH} (or --config, or BPFLEET_AGENT_CONFIG) < BPFLEET_* variables < flags.
gRPC needs mutual TLS (--tls-ca/--tls-cert/--tls-key, or grpc.tls in the file) or an explicit
--insecure (BPFLEET_INSECURE=1); the certificate must name this host (spiffe://<trust domain>/bpfleet/host/<name>).
SIGHUP (systemctl reload) re-reads the config: logLevel and host.labels apply live; other
changes are reported and need a restart. Running programs stay pinned across restarts.`)
  .action(async (opts: AgentFlags) => {
    const { config, file } = loadAgentConfig(opts);
    if (opts.printConfig) {
      process.stdout.write(printableConfig(config));
      return;
    }
    refuseUnwired(config, AGENT_UNWIRED_FIELDS);
    setLogLevel(config.logLevel);
    await run(config, file, opts);
  });

program.command('version')
  .description('print the bpfleet version and the git commit it was built from')
  .action(async () => {
    const { versionLine } = await import('../common/version.js');
    process.stdout.write(`${versionLine('bpfleet-agent')}\n`);
  });

async function run(config: AgentDaemonConfig, file: string | null, opts: AgentFlags): Promise<void> {
  const [{ startDaemonTelemetry }, { TrustedKeys }, { checkHostIdentity, startAgent }, { crashHookFromEnv }, { transportFromConfig }, { quietIpServerNameWarning }] = await Promise.all([
    import('../common/daemon-telemetry.js'), import('../common/signing.js'), import('./agent.js'), import('./crash-hook.js'), import('../common/tls.js'),
    import('../common/ip-server-name-warning.js'),
  ]);
  quietIpServerNameWarning();
  // Before anything starts: no TLS and no explicit insecure, or another host's certificate, is refused.
  const transport = transportFromConfig(config.grpc, 'bpfleet-agent');
  checkHostIdentity(config.host.name, transport);
  const log = createLogger('agent').child({ host: config.host.name });
  if (file) log.info({ file }, 'config read');
  const { storeTlsFromConfig, warnPlainStores } = await import('../common/store-clients.js');
  const storeTls = storeTlsFromConfig(config);
  warnPlainStores(storeTls, log);
  const telemetry = await startDaemonTelemetry('bpfleet-agent', config.host.name, { metricsPort: config.metrics.port, metricsHost: config.metrics.host }, log);
  const { signatures: sig } = config;
  const signatures = sig.trustedKeysDir ? { require: sig.require, trusted: TrustedKeys.fromDir(sig.trustedKeysDir) } : undefined;
  const checkpoint = crashHookFromEnv();
  if (checkpoint) log.warn({ crashAt: process.env.BPFLEET_CRASH_AT }, 'test crash hook armed: this agent kills itself during its first swap at that point');
  if (config.simClockOffsetMs !== 0 && config.driver !== 'sim') throw new InvalidArgumentError('--sim-clock-offset needs --driver sim');
  const offset = config.simClockOffsetMs;
  const { systemClock } = await import('./telemetry-publisher.js');
  const clock = offset ? { ...systemClock, wallMs: () => Date.now() + offset } : undefined;
  const driver = config.driver === 'sim'
    ? new (await import('./dataplane/sim/sim-driver.js')).SimDriver({ faults: { loadDelayMs: config.simLoadDelayMs } })
    : new (await import('./dataplane/kernel/kernel-driver.js')).KernelDriver({ pinRoot: config.pinRoot, netns: config.netns, checkpoint });
  const agent = await startAgent({
    host: config.host.name, listen: config.listen, advertise: config.advertise,
    etcdEndpoints: config.etcd.endpoints, natsServers: config.nats.servers, storeTls,
    labels: config.host.labels, cacheDir: config.cacheDir, telemetryIntervalMs: config.telemetryIntervalMs,
    leaseTtlSeconds: config.leaseTtlSeconds, driver, log, signatures, checkpoint, clock, transport,
  });

  let running = config;
  process.on('SIGHUP', () => {
    let next: AgentDaemonConfig;
    try {
      next = loadAgentConfig(opts).config;
    } catch (err) {
      log.error({ err: (err as Error).message }, 'config reload refused: the running config stays');
      return;
    }
    const changed = changedFields(running, next);
    const needRestart = changed.filter((f) => !AGENT_LIVE_FIELDS.has(f));
    if (changed.includes('logLevel')) setLogLevel(next.logLevel);
    if (changed.includes('host.labels')) {
      agent.setLabels(next.host.labels).catch((err: unknown) => log.error({ err }, 're-registering with the new labels failed'));
    }
    running = { ...running, logLevel: next.logLevel, host: { ...running.host, labels: next.host.labels } };
    log.info({ applied: changed.filter((f) => AGENT_LIVE_FIELDS.has(f)), needRestart }, needRestart.length > 0
      ? 'config reloaded; some changes need a restart (systemctl restart bpfleet-agent) and were not applied'
      : 'config reloaded');
  });
  const shutdown = (signal: string) => {
    log.info({ signal }, 'stopping; pinned programs keep running');
    agent.stop().then(() => telemetry.shutdown()).then(() => process.exit(0), (err) => {
      log.error({ err }, 'unclean stop');
      process.exit(1);
    });
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

program.parseAsync().catch((err) => {
  process.stderr.write(`bpfleet-agent: ${(err as Error).message}\n`);
  process.exit(2);
});
