import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Attachment } from '../../../common/attachment.js';
import { BpfleetError } from '../../../common/errors.js';
import { simArtifact } from './artifacts.js';
import { SimCrash, type CrashPoint } from './faults.js';
import { SimDriver } from './sim-driver.js';

const eth0: Attachment = { hook: 'xdp', iface: 'eth0' };
const v1 = simArtifact({ name: 'pass-counter', version: '1.0.0' });
const v2 = simArtifact({ name: 'pass-counter', version: '2.0.0' });
const v3 = simArtifact({ name: 'pass-counter', version: '3.0.0' });

async function withV1(): Promise<SimDriver> {
  const sim = new SimDriver();
  await sim.install(eth0, v1, null);
  return sim;
}

describe('SimDriver crash points', () => {
  const survivors: Array<[CrashPoint, 'old' | 'new']> = [
    ['before-load', 'old'],
    ['after-load', 'old'],
    ['after-swap', 'new'],
  ];
  for (const [point, survivor] of survivors) {
    it(`leaves the ${survivor} module running after a crash ${point}, and the restarted agent converges`, async () => {
      const sim = await withV1();
      const [old] = await sim.observe();
      sim.faults = { crashMidSwap: point };

      await assert.rejects(sim.install(eth0, v2, v1.digest), (err) => err instanceof SimCrash && err.point === point);

      await assert.rejects(sim.observe(), SimCrash, 'a crashed agent does nothing more');
      const restarted = new SimDriver({ host: sim.host });
      const [running] = await restarted.observe();
      assert.ok(running, 'something runs after any crash');
      if (survivor === 'old') {
        assert.deepEqual(running, old);
      } else {
        assert.equal(running.digest, v2.digest);
        assert.equal(running.linkId, old?.linkId);
      }
      const retried = await restarted.install(eth0, v2, v1.digest);
      assert.equal(retried.changed, survivor === 'old');
      assert.equal(retried.running.digest, v2.digest);
    });
  }

  it('leaves nothing attached after a crash before the first swap', async () => {
    const sim = new SimDriver({ faults: { crashMidSwap: 'after-load' } });
    await assert.rejects(sim.install(eth0, v1, null), SimCrash);
    assert.deepEqual(await new SimDriver({ host: sim.host }).observe(), []);
  });
});

describe('SimDriver load delay', () => {
  it('keeps the old module running while the new one loads', async () => {
    const sim = await withV1();
    const [old] = await sim.observe();
    sim.faults.loadDelayMs = 40;

    const pending = sim.install(eth0, v2, v1.digest);
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.deepEqual(await sim.observe(), [old]);
    const result = await pending;

    assert.ok(result.timing.loadMs >= 39, `loadMs ${result.timing.loadMs}`);
    assert.equal(result.running.digest, v2.digest);
  });

  it('lets only one of two concurrent swaps from the same digest win', async () => {
    const sim = await withV1();
    sim.faults.loadDelayMs = 5;

    const outcomes = await Promise.allSettled([sim.install(eth0, v2, v1.digest), sim.install(eth0, v3, v1.digest)]);

    assert.equal(outcomes[0].status, 'fulfilled');
    assert.equal(outcomes[1].status, 'rejected');
    assert.equal((outcomes[1] as PromiseRejectedResult).reason.reason, 'DRIFT');
    assert.equal((await sim.observe())[0]?.digest, v2.digest);
  });

  it('refuses the swap when the host drifted during the load', async () => {
    const sim = await withV1();
    sim.faults.loadDelayMs = 20;
    const foreign = simArtifact({ name: 'someone-else', version: '0' }).digest;

    const pending = sim.install(eth0, v2, v1.digest);
    sim.driftNow(eth0, foreign);

    await assert.rejects(pending, (err) => err instanceof BpfleetError && err.reason === 'DRIFT' && err.message.includes(foreign));
    assert.equal((await sim.observe())[0]?.digest, foreign);
  });
});

describe('SimDriver verifier rejection', () => {
  it("puts the fault's complaint into the message and a kernel-shaped log into detail", async () => {
    const sim = await withV1();
    sim.faults.verifierReject = (a) => a.digest === v2.digest && 'R0 !read_ok';

    await assert.rejects(sim.install(eth0, v2, v1.digest), (err) => {
      assert.ok(err instanceof BpfleetError);
      assert.equal(err.reason, 'VERIFIER_REJECTED');
      assert.match(err.message, /pass_counter: R0 !read_ok$/);
      assert.match(err.detail ?? '', /\nR0 !read_ok\nprocessed \d+ insns/);
      return true;
    });
    assert.equal((await sim.install(eth0, v3, v1.digest)).changed, true);
  });
});

describe('SimDriver drift', () => {
  it('can detach behind the agent, which then sees nothing running', async () => {
    const sim = await withV1();
    sim.driftNow(eth0, null);
    assert.deepEqual(await sim.observe(), []);
    assert.equal((await sim.install(eth0, v2, null)).changed, true);
  });
});

describe('SimDriver close', () => {
  it('stops the driver but not what runs', async () => {
    const sim = await withV1();
    const running = await sim.observe();
    await sim.close();
    await assert.rejects(sim.install(eth0, v2, v1.digest), (err) => err instanceof BpfleetError && err.reason === 'CLOSED');
    assert.deepEqual(await new SimDriver({ host: sim.host }).observe(), running);
  });
});
