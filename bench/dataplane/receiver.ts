/**
 * A UDP socket inside a namespace that counts what reaches it: the benchmarks' witness of
 * packets that got through a firewall, independent of the programs' own counters.
 */
import { findExecutable, spawnManaged, type ManagedProcess } from '../../dev/processes.js';

// SO_RCVBUFFORCE (root) goes past net.core.rmem_max, so a burst is queued, not dropped. On
// SIGINT it drains what is queued, then prints {"received":N}.
const PYTHON_RECEIVER = `
import json, signal, socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 64 << 20)
s.bind((addr, port))
s.settimeout(0.1)
stop = []
signal.signal(signal.SIGINT, lambda *_: stop.append(1))
print("ready", flush=True)
buf, n = bytearray(2048), 0
while not stop:
    try:
        s.recv_into(buf)
        n += 1
    except socket.timeout:
        pass
s.setblocking(False)
while True:
    try:
        s.recv_into(buf)
        n += 1
    except BlockingIOError:
        break
print(json.dumps({"received": n}), flush=True)
`;

// Bound by timeout(1) like the traffic senders, in case this process dies without its hooks.
const MAX_LIFETIME_S = 15 * 60;

export interface UdpReceiver {
  /** Stops receiving and resolves with the number of datagrams received. */
  stop(): Promise<number>;
}

/** Binds `addr`:`port` inside `netns` (a name under /run/netns); resolves once bound. */
export async function startUdpReceiver(netns: string, addr: string, port: number): Promise<UdpReceiver> {
  const python = findExecutable('python3');
  const timeout = findExecutable('timeout');
  if (!python || !timeout) throw new Error('udp receiver: needs python3 and timeout(1)');
  const proc: ManagedProcess = spawnManaged({
    name: `udp-receiver-${port}`,
    command: timeout,
    args: ['--signal=INT', '--kill-after=2', String(MAX_LIFETIME_S), python, '-c', PYTHON_RECEIVER, addr, String(port)],
    netns,
  });
  try {
    await proc.waitForLine(/^ready$/, 10_000);
  } catch (err) {
    await proc.kill();
    throw err;
  }
  return {
    async stop() {
      proc.signal('SIGINT');
      const [, count] = await proc.waitForLine(/^\{"received": (\d+)\}$/, 10_000).catch(async (err: unknown) => {
        await proc.kill();
        throw err;
      });
      await proc.exited;
      return Number(count);
    },
  };
}
