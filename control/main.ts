import { hostname } from 'node:os';
import { Command, InvalidArgumentError } from 'commander';
import { TrustedKeys, type SignaturePolicy } from '../common/signing.js';
import { addMetricsOptions, startDaemonTelemetry } from '../common/daemon-telemetry.js';
import { createLogger } from '../common/log.js';
import { addTlsOptions, loadTransport, quietIpServerNameWarning } from '../common/tls.js';
import { startControlPlane } from './control-plane.js';

const program = addTlsOptions(addMetricsOptions(new Command('bpfleet-control')))
  .description('bpfleet control plane: the API, and the rollout controller while this replica leads')
  .option('--listen <addr>', 'ControlService gRPC address (loopback by default)', process.env.BPFLEET_LISTEN ?? '127.0.0.1:50051')
  .option('--etcd <urls>', 'comma-separated etcd endpoints', process.env.BPFLEET_ETCD ?? 'http://127.0.0.1:2379')
  .option('--nats <urls>', 'comma-separated NATS servers', process.env.BPFLEET_NATS ?? 'nats://127.0.0.1:4222')
  .option('--id <name>', 'replica identity for leader election', `${hostname()}-${process.pid}`)
  .option('--leader-ttl <s>', 'leader lease TTL in seconds (failover takes about this long)', (v) => Number(v), 5)
  .option('--require-signatures', 'fleet-wide policy: refuse to create a rollout of a module not signed by a key in --trusted-keys (before any host is touched)')
  .option('--trusted-keys <dir>', 'directory of ed25519 public keys (*.pem); without --require-signatures, signed modules must verify but unsigned ones pass')
  .action(async (opts) => {
    if (opts.requireSignatures && !opts.trustedKeys) throw new InvalidArgumentError('--require-signatures needs --trusted-keys <dir>');
    const signatures: SignaturePolicy | undefined = opts.trustedKeys
      ? { require: Boolean(opts.requireSignatures), trusted: TrustedKeys.fromDir(opts.trustedKeys) }
      : undefined;
    const transport = loadTransport(opts, 'bpfleet-control');
    const log = createLogger('control').child({ replica: opts.id });
    const telemetry = await startDaemonTelemetry('bpfleet-control', opts.id, opts, log);
    const cp = await startControlPlane({
      listen: opts.listen, etcdEndpoints: opts.etcd.split(','), natsServers: opts.nats.split(','),
      identity: opts.id, leaderTtlSeconds: opts.leaderTtl, transport, signatures, log,
    });
    const shutdown = (signal: string) => {
      log.info({ signal }, 'stopping');
      cp.stop().then(() => telemetry.shutdown()).then(() => process.exit(0), () => process.exit(1));
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  });

quietIpServerNameWarning();
program.parseAsync().catch((err) => {
  process.stderr.write(`bpfleet-control: ${(err as Error).message}\n`);
  process.exit(2);
});
