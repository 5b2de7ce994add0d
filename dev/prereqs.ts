/**
 * What the local fleet, the integration tests and the benchmarks need from the machine: each
 * check says what is missing and how to install it.
 */
import { existsSync } from 'node:fs';
import { bpffsMounted } from './pins.js';
import { CommandError, findExecutable, run } from './processes.js';

export type Prereq = 'root' | 'bpffs' | 'bpf' | 'etcd' | 'nats' | 'netns' | 'clang' | 'nsenter' | 'python3' | 'python3-grpc';

/** Debian's python3-* packages install into this interpreter, not into a python3 earlier on PATH (pyenv, a venv). */
export const SYSTEM_PYTHON = '/usr/bin/python3';

const BOOTSTRAP = 'run infra/bootstrap.sh';

function errText(err: unknown): string {
  const text = err instanceof CommandError ? err.stderr.trim() || err.message : err instanceof Error ? err.message : String(err);
  return text.split('\n')[0]!;
}

/** `cmd` is a name looked up on PATH, or an absolute path. */
async function works(cmd: string, args: string[]): Promise<string | null> {
  const bin = cmd.startsWith('/') ? (existsSync(cmd) ? cmd : undefined) : findExecutable(cmd);
  if (!bin) return `${cmd} not installed`;
  try {
    await run(bin, args, { timeoutMs: 10_000 });
    return null;
  } catch (err) {
    return `${cmd} ${args.join(' ')} failed: ${errText(err)}`;
  }
}

/** Each check resolves to null when fine, else to why not and how to fix it. */
const CHECKS: Record<Prereq, () => Promise<string | null>> = {
  root: async () => (process.getuid?.() === 0 ? null : 'not root: BPF and network namespaces need root (run as root or with sudo)'),
  bpffs: async () => (bpffsMounted() ? null : `bpffs not mounted at /sys/fs/bpf: mount -t bpf bpf /sys/fs/bpf (or ${BOOTSTRAP})`),
  bpf: async () => {
    if (process.getuid?.() !== 0) return 'the bpf() syscall needs root';
    const why = await works('bpftool', ['prog', 'show']);
    return why && `bpf() syscall not usable (${why}): needs CAP_BPF/CAP_SYS_ADMIN and a kernel with CONFIG_BPF_SYSCALL; ${BOOTSTRAP} installs bpftool`;
  },
  etcd: async () => {
    const why = await works('etcd', ['--version']);
    return why && `${why}: apt-get install etcd-server etcd-client (or ${BOOTSTRAP})`;
  },
  nats: async () => {
    const why = await works('nats-server', ['--version']);
    return why && `${why}: apt-get install nats-server (or ${BOOTSTRAP})`;
  },
  netns: async () => {
    if (process.getuid?.() !== 0) return 'network namespaces need root';
    // Creating one is the only real proof; the name is a sweepable bpfleet-* one in case we die here.
    const name = `bpfleet-probe-${process.pid}`;
    const why = await works('ip', ['netns', 'add', name]);
    if (why) return `network namespaces not usable (${why}): needs CAP_NET_ADMIN and CONFIG_NET_NS`;
    await run('ip', ['netns', 'del', name]).catch(() => {});
    return null;
  },
  clang: async () => {
    const why = await works('clang', ['--version']);
    if (why) return `${why}: apt-get install clang llvm libbpf-dev (or ${BOOTSTRAP})`;
    return existsSync('/usr/include/bpf/bpf_helpers.h') ? null : `libbpf headers missing: apt-get install libbpf-dev (or ${BOOTSTRAP})`;
  },
  nsenter: async () => (findExecutable('nsenter') ? null : 'nsenter not installed: apt-get install util-linux'),
  python3: async () => (findExecutable('python3') ? null : `python3 not installed: apt-get install python3 (or ${BOOTSTRAP})`),
  'python3-grpc': async () => {
    const why = await works(SYSTEM_PYTHON, ['-c', 'import grpc, google.protobuf']);
    return why && `${why}: apt-get install python3-grpcio python3-protobuf (or ${BOOTSTRAP})`;
  },
};

const cache = new Map<Prereq, Promise<string | null>>();

/** The reasons the given prerequisites are not met, one line each ("etcd: ..."); empty when all are. */
export async function missingPrereqs(names: readonly Prereq[]): Promise<string[]> {
  const results = await Promise.all(names.map(async (n) => {
    let p = cache.get(n);
    if (!p) {
      p = CHECKS[n]();
      cache.set(n, p);
    }
    const why = await p;
    return why && `${n}: ${why}`;
  }));
  return results.filter((r): r is string => r !== null);
}
