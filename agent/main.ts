import { hostname } from 'node:os';
import { Command, InvalidArgumentError } from 'commander';
import { HOST_NAME_RE } from '../common/keys.js';
import { addMetricsOptions, startDaemonTelemetry } from '../common/daemon-telemetry.js';
import { createLogger } from '../common/log.js';
import { addTlsOptions, loadTransport, quietIpServerNameWarning } from '../common/tls.js';
import { TrustedKeys, type SignaturePolicy } from '../common/signing.js';
import { checkHostIdentity, startAgent } from './agent.js';
import { crashHookFromEnv } from './crash-hook.js';
import type { DataplaneDriver } from './dataplane/driver.js';

/** Labels are shown by the CLI and matched by selectors: short printable words, a few per host. */
const LABEL_RE = /^[A-Za-z0-9._-]{1,63}$/;
const LABEL_VALUE_RE = /^[A-Za-z0-9._-]{0,63}$/;
const MAX_LABELS = 32;

function labels(value: string, previous: Record<string, string>): Record<string, string> {
  const out = { ...previous };
  for (const pair of value.split(',').filter(Boolean)) {
    const [k, v] = pair.split('=');
    if (!k || v === undefined) throw new InvalidArgumentError(`label "${pair}" is not key=value`);
    if (!LABEL_RE.test(k) || !LABEL_VALUE_RE.test(v)) throw new InvalidArgumentError(`label "${pair}": key and value are up to 63 of letters, digits, ".", "_", "-"`);
    out[k] = v;
  }
  if (Object.keys(out).length > MAX_LABELS) throw new InvalidArgumentError(`${Object.keys(out).length} labels; at most ${MAX_LABELS}`);
  return out;
}

const program = addTlsOptions(addMetricsOptions(new Command('bpfleet-agent')))
  .description('bpfleet agent: loads and atomically swaps eBPF modules on this host as the control plane intends')
  .option('--host <name>', 'host name in the fleet', hostname().toLowerCase().split('.')[0])
  .option('--listen <addr>', 'AgentService gRPC address (keep it on loopback or a management network)', '127.0.0.1:50061')
  .option('--advertise <addr>', 'address the control plane dials, if not --listen')
  .option('--etcd <urls>', 'comma-separated etcd endpoints', process.env.BPFLEET_ETCD ?? 'http://127.0.0.1:2379')
  .option('--nats <urls>', 'comma-separated NATS servers', process.env.BPFLEET_NATS ?? 'nats://127.0.0.1:4222')
  .option('--label <k=v,...>', 'host labels used by rollout selectors (repeatable)', labels, {})
  .option('--driver <kind>', 'dataplane: "kernel" (libbpf) or "sim" (in-memory, for scale tests only)', 'kernel')
  .option('--pin-root <dir>', 'bpffs directory for this agent\'s pinned links, programs and maps', '/sys/fs/bpf/bpfleet')
  .option('--netns <name>', 'network namespace whose interfaces this agent drives (the agent itself stays in its own)')
  .option('--cache-dir <dir>', 'local artifact cache, by digest', '/var/cache/bpfleet')
  .option('--telemetry-interval <ms>', 'telemetry report interval in ms', (v) => Number(v), 1000)
  .option('--lease-ttl <s>', 'registration lease TTL in seconds', (v) => Number(v), 10)
  .option('--require-signatures', 'refuse modules that are not signed by a key in --trusted-keys')
  .option('--trusted-keys <dir>', 'directory of ed25519 public keys (*.pem, from bpfleet keys create); signed modules are checked against them')
  .option('--sim-load-delay <ms>', 'with --driver sim: how long each load takes (stands in for the verifier; tests widen windows with it)', (v) => Number(v), 0)
  .action(async (opts) => {
    if (!HOST_NAME_RE.test(opts.host)) throw new InvalidArgumentError(`host name "${opts.host}": lowercase letters, digits and dashes`);
    const transport = loadTransport(opts, 'bpfleet-agent');
    checkHostIdentity(opts.host, transport);
    const log = createLogger('agent').child({ host: opts.host });
    const telemetry = await startDaemonTelemetry('bpfleet-agent', opts.host, opts, log);
    if (opts.requireSignatures && !opts.trustedKeys) throw new InvalidArgumentError('--require-signatures needs --trusted-keys <dir>');
    const signatures: SignaturePolicy | undefined = opts.trustedKeys
      ? { require: Boolean(opts.requireSignatures), trusted: TrustedKeys.fromDir(opts.trustedKeys) }
      : undefined;
    const checkpoint = crashHookFromEnv();
    if (checkpoint) log.warn({ crashAt: process.env.BPFLEET_CRASH_AT }, 'test crash hook armed: this agent kills itself during its first swap at that point');
    let driver: DataplaneDriver;
    if (opts.driver === 'sim') {
      const { SimDriver } = await import('./dataplane/sim/sim-driver.js');
      driver = new SimDriver({ faults: { loadDelayMs: opts.simLoadDelay } });
    } else if (opts.driver === 'kernel') {
      const { KernelDriver } = await import('./dataplane/kernel/kernel-driver.js');
      driver = new KernelDriver({ pinRoot: opts.pinRoot, netns: opts.netns, checkpoint });
    } else {
      throw new InvalidArgumentError(`driver "${opts.driver}": use kernel or sim`);
    }
    const agent = await startAgent({
      host: opts.host, listen: opts.listen, advertise: opts.advertise,
      etcdEndpoints: opts.etcd.split(','), natsServers: opts.nats.split(','),
      labels: opts.label, cacheDir: opts.cacheDir, telemetryIntervalMs: opts.telemetryInterval,
      leaseTtlSeconds: opts.leaseTtl, driver, log, signatures, checkpoint, transport,
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
  });

quietIpServerNameWarning();
program.parseAsync().catch((err) => {
  process.stderr.write(`bpfleet-agent: ${(err as Error).message}\n`);
  process.exit(2);
});
