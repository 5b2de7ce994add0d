/**
 * The sim host pool as its own process (THE SIM DATAPLANE, for scale tests only): many
 * simulated hosts behind one gRPC server, registered in etcd, reporting telemetry on NATS.
 * Prints "sim host pool ready" with its address once every host is registered.
 */
import { addTlsOptions, loadTransport, quietIpServerNameWarning } from '../../common/tls.js';
import { Command, InvalidArgumentError } from 'commander';
import { DEFAULT_BEHAVIOUR } from '../../agent/dataplane/sim/host.js';
import { HOST_NAME_RE } from '../../common/keys.js';
import { createLogger } from '../../common/log.js';
import { SimHostPool } from './pool.js';

function moduleRef(value: string): { module: string; version: string } {
  const at = value.lastIndexOf('@');
  if (at <= 0 || at === value.length - 1) throw new InvalidArgumentError(`"${value}" is not <module>@<version>`);
  return { module: value.slice(0, at), version: value.slice(at + 1) };
}

function dropRates(value: string, previous: Map<string, number>): Map<string, number> {
  const [version, rate] = value.split('=');
  const r = Number(rate);
  if (!version || !(r >= 0 && r <= 1)) throw new InvalidArgumentError(`"${value}" is not <version>=<drop rate 0..1>`);
  return new Map(previous).set(version, r);
}

function labels(value: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of value.split(',').filter(Boolean)) {
    const [k, v] = pair.split('=');
    if (!k || v === undefined) throw new InvalidArgumentError(`label "${pair}" is not key=value`);
    out[k] = v;
  }
  return out;
}

const positive = (what: string) => (v: string): number => {
  const n = Number(v);
  if (!(Number.isInteger(n) && n >= 0)) throw new InvalidArgumentError(`${what} "${v}" is not a whole number`);
  return n;
};

const program = addTlsOptions(new Command('bpfleet-sim-host-pool'))
  .description('many simulated hosts in one process, for scale tests (sim dataplane: no kernel)')
  .requiredOption('--hosts <n>', 'how many hosts', positive('host count'))
  .option('--name-prefix <p>', 'host i is named <p><i>', 'sim-')
  .option('--listen <addr>', 'AgentService gRPC address for every host', '127.0.0.1:0')
  .option('--etcd <urls>', 'comma-separated etcd endpoints', process.env.BPFLEET_ETCD ?? 'http://127.0.0.1:2379')
  .option('--nats <urls>', 'comma-separated NATS servers', process.env.BPFLEET_NATS ?? 'nats://127.0.0.1:4222')
  .option('--label <k=v,...>', 'labels of every host', labels, { role: 'edge' })
  .option('--telemetry-interval <ms>', 'telemetry report interval per host in ms; 0 for none', positive('interval'), 1000)
  .option('--lease-ttl <s>', 'registration lease TTL in seconds', positive('TTL'), 10)
  .option('--pps <n>', 'simulated packets per second per interface', positive('pps'), 1000)
  .option('--preinstall <module@version>', 'attach this module on every host before registering', moduleRef)
  .option('--attachment <a>', 'attachment for --preinstall', 'xdp:eth0')
  .option('--store-ca <file>', 'CA bundle (PEM) of the etcd and NATS servers; with --store-cert/--store-key the pool presents that certificate to both')
  .option('--store-cert <file>', 'client certificate (PEM) for etcd and NATS')
  .option('--store-key <file>', 'its private key (PEM)')
  .option('--drop-rate <version=rate>', 'a module version that drops this fraction of packets (repeatable)', dropRates, new Map<string, number>())
  .action(async (opts) => {
    const prefix = opts.namePrefix as string;
    if (!HOST_NAME_RE.test(`${prefix}${opts.hosts}`)) throw new InvalidArgumentError(`--name-prefix "${prefix}" makes host names that are not lowercase letters, digits and dashes`);
    const transport = loadTransport(opts, 'bpfleet-sim-host-pool');
    const log = createLogger('sim-host-pool');
    const rates = opts.dropRate as Map<string, number>;
    const store = [opts.storeCa, opts.storeCert, opts.storeKey];
    if (store.some(Boolean) && !store.every(Boolean)) throw new InvalidArgumentError('--store-ca, --store-cert and --store-key go together');
    const storeTls = opts.storeCa ? { caPath: opts.storeCa as string, certPath: opts.storeCert as string, keyPath: opts.storeKey as string } : undefined;
    const pool = await SimHostPool.start({
      hosts: opts.hosts, namePrefix: prefix, labels: () => opts.label,
      listen: opts.listen, etcdEndpoints: opts.etcd.split(','), natsServers: opts.nats.split(','),
      telemetryIntervalMs: opts.telemetryInterval, leaseTtlSeconds: opts.leaseTtl, pps: opts.pps,
      behaviour: (a) => ({ ...DEFAULT_BEHAVIOUR, dropRate: rates.get(a.manifest.version) ?? 0 }),
      preinstall: opts.preinstall ? { ...opts.preinstall, attachment: opts.attachment } : undefined,
      transport, storeTls, log,
    });
    // On stdout, whatever the log level: whoever started the pool waits for this line.
    process.stdout.write(`sim host pool ready: ${pool.hosts.size} hosts at ${pool.address}\n`);
    const shutdown = (signal: string) => {
      log.info({ signal }, 'stopping');
      pool.stop().then(() => process.exit(0), () => process.exit(1));
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  });

quietIpServerNameWarning();
program.parseAsync().catch((err) => {
  process.stderr.write(`bpfleet-sim-host-pool: ${(err as Error).message}\n`);
  process.exit(2);
});
