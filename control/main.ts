import { hostname } from 'node:os';
import { Command, InvalidArgumentError } from 'commander';
import { addMetricsOptions, startDaemonTelemetry } from '../common/daemon-telemetry.js';
import { createLogger } from '../common/log.js';
import { addStoreTlsOptions, storeTlsFromOptions, warnPlainStores } from '../common/store-clients.js';
import { DEFAULT_TELEMETRY_MAX_SKEW_MS } from './analysis/ingest.js';
import { startControlPlane } from './control-plane.js';

function milliseconds(value: string): number {
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) throw new InvalidArgumentError(`"${value}" is not a whole number of milliseconds`);
  return Number(value);
}

const program = addStoreTlsOptions(addMetricsOptions(new Command('bpfleet-control')))
  .description('bpfleet control plane: the API, and the rollout controller while this replica leads')
  .option('--listen <addr>', 'ControlService gRPC address (loopback by default)', process.env.BPFLEET_LISTEN ?? '127.0.0.1:50051')
  .option('--etcd <urls>', 'comma-separated etcd endpoints', process.env.BPFLEET_ETCD ?? 'http://127.0.0.1:2379')
  .option('--nats <urls>', 'comma-separated NATS servers', process.env.BPFLEET_NATS ?? 'nats://127.0.0.1:4222')
  .option('--id <name>', 'replica identity for leader election', `${hostname()}-${process.pid}`)
  .option('--leader-ttl <s>', 'leader lease TTL in seconds (failover takes about this long)', (v) => Number(v), 5)
  .option('--telemetry-max-skew <ms>', 'drop telemetry stamped more than this far ahead of this replica\'s clock', milliseconds, DEFAULT_TELEMETRY_MAX_SKEW_MS)
  .action(async (opts) => {
    const storeTls = storeTlsFromOptions(opts);
    const log = createLogger('control').child({ replica: opts.id });
    warnPlainStores(storeTls, log);
    const telemetry = await startDaemonTelemetry('bpfleet-control', opts.id, opts, log);
    const cp = await startControlPlane({
      listen: opts.listen, etcdEndpoints: opts.etcd.split(','), natsServers: opts.nats.split(','), storeTls,
      telemetryMaxSkewMs: opts.telemetryMaxSkew, identity: opts.id, leaderTtlSeconds: opts.leaderTtl, log,
    });
    const shutdown = (signal: string) => {
      log.info({ signal }, 'stopping');
      cp.stop().then(() => telemetry.shutdown()).then(() => process.exit(0), () => process.exit(1));
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  });

program.parseAsync().catch((err) => {
  process.stderr.write(`bpfleet-control: ${(err as Error).message}\n`);
  process.exit(2);
});
