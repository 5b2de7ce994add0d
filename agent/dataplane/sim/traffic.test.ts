import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Attachment } from '../../../common/attachment.js';
import type { ModuleArtifact } from '../driver.js';
import { simArtifact } from './artifacts.js';
import { SimDriver, type SimDriverOptions } from './sim-driver.js';

const xdp: Attachment = { hook: 'xdp', iface: 'eth0' };
const good = simArtifact({ name: 'pass-counter', version: '1.0.0' });
const bad = simArtifact({ name: 'pass-counter', version: '3.0.0-bad' });

function simAt(opts: SimDriverOptions = {}): { sim: SimDriver; clock: { ms: number } } {
  const clock = { ms: 1_000_000 };
  const behaviour = (a: ModuleArtifact) => ({ dropRate: a === bad ? 0.25 : 0, runTimeNsPerPacket: a === bad ? 300 : 100 });
  return { sim: new SimDriver({ now: () => clock.ms, behaviour, ...opts }), clock };
}

describe('SimDriver synthetic traffic', () => {
  it('counts runs, run time, counters and interface packets at the configured rate', async () => {
    const { sim, clock } = simAt({ pps: 2000 });
    await sim.install(xdp, good, null);
    clock.ms += 1500;

    assert.deepEqual(await sim.stats(xdp), {
      runCount: 3000n,
      runTimeNs: 300_000n,
      counters: { packets: 3000n },
      ifaceRxPackets: 3000n,
      ifaceTxPackets: 3000n,
      stackRxPackets: 3000n,
    });
  });

  it('loses no packet to rounding however finely time is polled', async () => {
    const { sim, clock } = simAt({ pps: 333 });
    await sim.install(xdp, good, null);
    for (let i = 0; i < 1000; i++) {
      clock.ms += 3;
      await sim.stats(xdp);
    }
    assert.equal((await sim.stats(xdp))?.runCount, 999n);
  });

  it('shows a dropping module as interface rx growing slower than its run count', async () => {
    const { sim, clock } = simAt();
    await sim.install(xdp, good, null);
    clock.ms += 1000;
    const before = (await sim.stats(xdp))!;
    await sim.install(xdp, bad, good.digest);
    clock.ms += 4000;
    const after = (await sim.stats(xdp))!;

    assert.equal(after.runCount, 4000n, 'a new program starts its own run count');
    assert.equal(after.runTimeNs, 1_200_000n);
    assert.equal(after.ifaceRxPackets! - before.ifaceRxPackets!, 3000n);
    assert.equal(after.ifaceTxPackets! - before.ifaceTxPackets!, 4000n);
  });

  it('charges a drop at egress to tx, not rx', async () => {
    const { sim, clock } = simAt();
    const egress: Attachment = { hook: 'tcx-egress', iface: 'eth0' };
    await sim.install(egress, simArtifact({ name: 'pass-counter', version: '3.0.0-bad', hook: 'tcx-egress' }), null);
    await sim.install(xdp, good, null);
    clock.ms += 1000;
    const stats = (await sim.stats(egress))!;
    assert.equal(stats.ifaceRxPackets, 1000n);
    assert.equal(stats.ifaceTxPackets, 1000n);

    const dropping = simAt({ behaviour: () => ({ dropRate: 0.5, runTimeNsPerPacket: 100 }) });
    await dropping.sim.install(egress, simArtifact({ name: 'egress-drop', version: '1', hook: 'tcx-egress' }), null);
    dropping.clock.ms += 1000;
    const dropped = (await dropping.sim.stats(egress))!;
    assert.deepEqual([dropped.ifaceRxPackets, dropped.ifaceTxPackets], [1000n, 500n]);
  });

  it('carries counters into the next version only when both pin bpfleet_counters', async () => {
    const pinned = (version: string) => simArtifact({ name: 'pinned', version, persistentMaps: ['bpfleet_counters'] });
    const { sim, clock } = simAt();
    await sim.install(xdp, pinned('1'), null);
    clock.ms += 1000;
    await sim.install(xdp, pinned('2'), pinned('1').digest);
    clock.ms += 500;
    assert.deepEqual((await sim.stats(xdp))?.counters, { packets: 1500n });

    await sim.install(xdp, good, pinned('2').digest);
    clock.ms += 200;
    assert.deepEqual((await sim.stats(xdp))?.counters, { packets: 200n });
  });

  it('keeps counting while the agent is down, and for the restarted agent', async () => {
    const { sim, clock } = simAt();
    await sim.install(xdp, good, null);
    clock.ms += 1000;
    await sim.close();
    clock.ms += 2000;

    const restarted = new SimDriver({ host: sim.host, now: () => clock.ms });
    assert.equal((await restarted.stats(xdp))?.runCount, 3000n);
  });

  it('neither uncounts nor recounts when the clock steps back', async () => {
    const { sim, clock } = simAt();
    await sim.install(xdp, good, null);
    clock.ms += 1000;
    await sim.stats(xdp);
    clock.ms -= 500;
    assert.equal((await sim.stats(xdp))?.runCount, 1000n);
    clock.ms += 1000;
    assert.equal((await sim.stats(xdp))?.runCount, 1500n);
  });
});
