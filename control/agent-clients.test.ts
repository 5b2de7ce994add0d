import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { AgentClients } from './agent-clients.js';

/** A loopback port nothing listens on: every apply there fails fast with UNAVAILABLE. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
}

describe('agent channels are bounded', () => {
  let port: number;
  before(async () => { port = await closedPort(); });
  // Distinct addresses, one port: 127.0.0.0/8 is all loopback.
  const address = (i: number) => `127.0.0.${i + 1}:${port}`;
  const intent = { host: 'h', attachment: 'xdp:eth0' } as never;
  const clients: AgentClients[] = [];
  after(() => clients.forEach((c) => c.close()));

  it('past maxChannels the least recently used channel is closed', async () => {
    const agents = new AgentClients(undefined, 512, { maxChannels: 3, idleMs: 60_000 });
    clients.push(agents);
    for (let i = 0; i < 5; i++) await agents.apply(address(i), intent, 2_000).catch(() => undefined);
    assert.equal(agents.open, 3);
  });

  it('a channel unused for idleMs is closed; one used since is kept', async () => {
    let now = 0;
    const agents = new AgentClients(undefined, 512, { maxChannels: 100, idleMs: 1_000 }, () => now);
    clients.push(agents);
    await agents.apply(address(0), intent, 2_000).catch(() => undefined);
    await agents.apply(address(1), intent, 2_000).catch(() => undefined);
    now = 800;
    await agents.apply(address(1), intent, 2_000).catch(() => undefined);
    now = 1_500;
    agents.closeIdle();
    assert.equal(agents.open, 1);
    now = 2_000;
    agents.closeIdle();
    assert.equal(agents.open, 0);
  });
});
