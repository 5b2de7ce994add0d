/**
 * Free loopback TCP ports. The kernel picks them; they are free when returned, but another
 * process may take one before the caller binds it, so servers started on them retry on
 * "address already in use" (see etcd.ts, nats.ts).
 */
import { createServer, type Server } from 'node:net';

export const LOOPBACK = '127.0.0.1';

function listen(host: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen({ host, port: 0, exclusive: true }, () => resolve(srv));
  });
}

function close(srv: Server): Promise<void> {
  return new Promise((resolve) => srv.close(() => resolve()));
}

/** `count` distinct free TCP ports on `host`. */
export async function freePorts(count: number, host = LOOPBACK): Promise<number[]> {
  // All listeners stay open until every port is picked, so the kernel cannot hand one out twice.
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) servers.push(await listen(host));
    return servers.map((s) => {
      const addr = s.address();
      if (addr === null || typeof addr === 'string') throw new Error('listen: no TCP address');
      return addr.port;
    });
  } finally {
    await Promise.all(servers.map(close));
  }
}

export async function freePort(host = LOOPBACK): Promise<number> {
  const [port] = await freePorts(1, host);
  return port!;
}
