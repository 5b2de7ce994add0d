import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import type { DataplaneDriver, ModuleArtifact, RunningModule } from '../../agent/dataplane/driver.js';
import { formatAttachment, type Attachment } from '../../common/attachment.js';
import { BpfleetError } from '../../common/errors.js';
import { shortDigest } from '../../common/digest.js';

/** What the conformance suite needs from a driver under test; made fresh for every test. */
export interface DriverFixture {
  driver: DataplaneDriver;
  /** Where v1, v2 and the bad artifacts go; v1 and v2 have a program for its hook. */
  attachment: Attachment;
  /** Same host, another hook, for which only `wrongHook` has a program. */
  otherHookAttachment?: Attachment;
  artifacts: {
    v1: ModuleArtifact;
    v2: ModuleArtifact;
    notElf: ModuleArtifact;
    notBpfElf: ModuleArtifact;
    wrongHook: ModuleArtifact;
    verifierReject: ModuleArtifact;
  };
  /** A new driver over the same persisted state, like an agent restart. */
  reopen(): Promise<DataplaneDriver>;
  /** Makes the attachment run `digest` (one of the fixture's artifacts) behind the driver's back. */
  driftTo?(digest: string): Promise<void>;
  /** Deletes the interface of `attachment`, as `ip link del` does. */
  deleteInterface?(): Promise<void>;
  /** Creates an interface named as `attachment`'s again, with nothing attached. */
  createInterface?(): Promise<void>;
  /** Removes everything the test left behind, whichever driver it ended with. */
  cleanup(): Promise<void>;
}

/**
 * Registers the tests every DataplaneDriver must pass, so that the sim cannot drift from
 * what the kernel does: the kernel driver and the sim driver each run this suite.
 */
export function runDriverConformance(label: string, makeFixture: () => Promise<DriverFixture>): void {
  async function fixture(t: TestContext): Promise<DriverFixture> {
    const fx = await makeFixture();
    t.after(() => fx.cleanup());
    return fx;
  }

  describe(`${label}: DataplaneDriver conformance`, () => {
    it('supports the hook of its attachment', async (t) => {
      const { driver, attachment } = await fixture(t);
      assert.ok(driver.capabilities().includes(attachment.hook));
    });

    it('installs a first module where nothing ran', async (t) => {
      const { driver, attachment, artifacts: { v1 } } = await fixture(t);
      assert.deepEqual(await driver.observe(), []);
      assert.equal(await driver.stats(attachment), null);

      const result = await driver.install(attachment, v1, null);

      assert.equal(result.changed, true);
      assert.deepEqual(
        { attachment: result.running.attachment, digest: result.running.digest, name: result.running.name, version: result.running.version },
        { attachment: formatAttachment(attachment), digest: v1.digest, name: v1.manifest.name, version: v1.manifest.version },
      );
      assert.match(result.running.progTag, /^[0-9a-f]{16}$/);
      assert.ok(result.running.progId > 0 && result.running.linkId > 0);
      assert.ok(result.timing.loadMs >= 0 && result.timing.swapMs >= 0);
      assert.deepEqual(await driver.observe(), [result.running]);
      const stats = await driver.stats(attachment);
      assert.ok(stats);
      assert.equal(typeof stats.runCount, 'bigint');
      assert.deepEqual(Object.keys(stats.counters).sort(), [...v1.manifest.counters].sort());
    });

    it('upgrades v1 to v2 on the same link with a new program', async (t) => {
      const { driver, attachment, artifacts: { v1, v2 } } = await fixture(t);
      const first = await driver.install(attachment, v1, null);

      const second = await driver.install(attachment, v2, v1.digest);

      assert.equal(second.changed, true);
      assert.equal(second.running.digest, v2.digest);
      assert.equal(second.running.version, v2.manifest.version);
      assert.equal(second.running.linkId, first.running.linkId);
      assert.notEqual(second.running.progId, first.running.progId);
      assert.deepEqual(await driver.observe(), [second.running]);
    });

    it('treats a repeated install as a no-op, even one that carries a stale expected digest', async (t) => {
      const { driver, attachment, artifacts: { v1, v2 } } = await fixture(t);
      const installed = await driver.install(attachment, v1, null);

      const repeat = await driver.install(attachment, v1, v1.digest);
      assert.equal(repeat.changed, false);
      assert.deepEqual(repeat.running, installed.running);

      // A retried Apply whose first answer was lost still names the digest it replaced.
      const upgraded = await driver.install(attachment, v2, v1.digest);
      const retried = await driver.install(attachment, v2, v1.digest);
      assert.equal(retried.changed, false);
      assert.deepEqual(retried.running, upgraded.running);
      assert.deepEqual(await driver.observe(), [upgraded.running]);
    });

    it('a new version of the running object runs under its name, version and counters, on the same program', async (t) => {
      const fx = await fixture(t);
      const { driver, attachment, artifacts: { v1 } } = fx;
      const first = await driver.install(attachment, v1, null);
      const same = { ...v1, manifest: { ...v1.manifest, version: `${v1.manifest.version}-same`, counters: [...v1.manifest.counters, 'extra'] } };

      const relabelled = await driver.install(attachment, same, v1.digest);

      assert.equal(relabelled.changed, true);
      assert.deepEqual(relabelled.running, { ...first.running, version: same.manifest.version });
      assert.deepEqual(await driver.observe(), [relabelled.running]);
      assert.deepEqual(Object.keys((await driver.stats(attachment))!.counters).sort(), [...same.manifest.counters].sort());
      assert.equal((await driver.install(attachment, same, v1.digest)).changed, false, 'then a no-op');
      await driver.close();
      const reopened = await fx.reopen();
      assert.deepEqual(await reopened.observe(), [relabelled.running], 'a restarted agent adopts the new version');
      const back = await reopened.install(attachment, v1, v1.digest);
      assert.deepEqual([back.changed, back.running.version, back.running.progId], [true, v1.manifest.version, first.running.progId]);
    });

    it('refuses a swap when the attachment does not run the expected digest', async (t) => {
      const { driver, attachment, artifacts: { v1, v2, wrongHook } } = await fixture(t);

      await assertDrift(driver.install(attachment, v1, v2.digest), [v2.digest]);
      assert.deepEqual(await driver.observe(), []);

      const installed = await driver.install(attachment, v1, null);
      await assertDrift(driver.install(attachment, v2, null), [v1.digest]);
      await assertDrift(driver.install(attachment, v2, wrongHook.digest), [v1.digest, wrongHook.digest]);
      assert.deepEqual(await driver.observe(), [installed.running]);
    });

    const badArtifacts = [
      { kind: 'notElf', code: 'INVALID_ARGUMENT', reason: 'NOT_ELF', message: /not an ELF object/ },
      { kind: 'notBpfElf', code: 'INVALID_ARGUMENT', reason: 'NOT_BPF_ELF', message: /ELF for machine \d+, not BPF/ },
      { kind: 'wrongHook', code: 'INVALID_ARGUMENT', reason: 'WRONG_HOOK', message: /hook/ },
      { kind: 'verifierReject', code: 'INVALID_ARGUMENT', reason: 'VERIFIER_REJECTED', message: /verifier/ },
    ] as const;
    for (const bad of badArtifacts) {
      it(`rejects ${bad.kind} with ${bad.reason} and leaves the running module alone`, async (t) => {
        const { driver, attachment, artifacts } = await fixture(t);
        const artifact = artifacts[bad.kind];
        await assertBpfleetError(driver.install(attachment, artifact, null), bad);
        assert.deepEqual(await driver.observe(), []);

        await driver.install(attachment, artifacts.v1, null);
        const before = await driver.observe();
        const error = await assertBpfleetError(driver.install(attachment, artifact, artifacts.v1.digest), bad);
        if (bad.reason === 'VERIFIER_REJECTED') assert.ok(error.detail, 'a verifier rejection carries the verifier log');
        assert.deepEqual(await driver.observe(), before);
      });
    }

    it('verifies an object without attaching it, and refuses there what install refuses', async (t) => {
      const { driver, attachment, artifacts } = await fixture(t);
      const { loadMs } = await driver.verify(attachment, artifacts.v2);
      assert.ok(loadMs >= 0);
      assert.deepEqual(await driver.observe(), [], 'a verified object is not attached');
      const installed = await driver.install(attachment, artifacts.v1, null);
      await driver.verify(attachment, artifacts.v2);
      for (const bad of badArtifacts) await assertBpfleetError(driver.verify(attachment, artifacts[bad.kind]), bad);
      assert.deepEqual(await driver.observe(), [installed.running], 'verifying changes nothing that runs');
      assert.deepEqual((await driver.install(attachment, artifacts.v2, artifacts.v1.digest)).changed, true, 'and leaves nothing in the way of the install');
    });

    it('adopts what runs after a restart instead of reinstalling', async (t) => {
      const fx = await fixture(t);
      const { attachment, artifacts: { v1, v2 } } = fx;
      const installed = await fx.driver.install(attachment, v1, null);
      const before = await fx.driver.stats(attachment);
      assert.ok(before);
      await fx.driver.close();

      const driver = await fx.reopen();

      assert.deepEqual(await driver.observe(), [installed.running]);
      const after = await driver.stats(attachment);
      assert.ok(after);
      assert.ok(after.runCount >= before.runCount, 'stats continue across a restart');
      assert.ok(after.runTimeNs >= before.runTimeNs);
      const repeat = await driver.install(attachment, v1, v1.digest);
      assert.equal(repeat.changed, false);
      assert.deepEqual(repeat.running, installed.running);
      const upgraded = await driver.install(attachment, v2, v1.digest);
      assert.equal(upgraded.running.linkId, installed.running.linkId);
    });

    it('rolls back from v2 to v1', async (t) => {
      const { driver, attachment, artifacts: { v1, v2 } } = await fixture(t);
      await driver.install(attachment, v1, null);
      const upgraded = await driver.install(attachment, v2, v1.digest);

      const rolledBack = await driver.install(attachment, v1, v2.digest);

      assert.equal(rolledBack.changed, true);
      assert.equal(rolledBack.running.digest, v1.digest);
      assert.equal(rolledBack.running.linkId, upgraded.running.linkId);
      assert.notEqual(rolledBack.running.progId, upgraded.running.progId);
      assert.deepEqual(await driver.observe(), [rolledBack.running]);
    });

    it('removes a module, and removing again is a no-op', async (t) => {
      const { driver, attachment, artifacts: { v1 } } = await fixture(t);
      await driver.install(attachment, v1, null);

      await driver.remove(attachment);
      assert.deepEqual(await driver.observe(), []);
      assert.equal(await driver.stats(attachment), null);
      await driver.remove(attachment);

      const reinstalled = await driver.install(attachment, v1, null);
      assert.equal(reinstalled.changed, true);
    });

    it('keeps attachments on different hooks independent', async (t) => {
      const { driver, attachment, otherHookAttachment: other, artifacts: { v1, wrongHook } } = await fixture(t);
      if (!other) return t.skip('fixture has no second hook');
      await assertBpfleetError(driver.install(other, v1, null), { code: 'INVALID_ARGUMENT', reason: 'WRONG_HOOK' });
      const a = await driver.install(attachment, v1, null);
      const b = await driver.install(other, wrongHook, null);

      assert.deepEqual(sortByAttachment(await driver.observe()), sortByAttachment([a.running, b.running]));
      await driver.remove(attachment);
      assert.deepEqual(await driver.observe(), [b.running]);
    });

    it('reports drift made behind its back and recovers from it', async (t) => {
      const fx = await fixture(t);
      if (!fx.driftTo) return t.skip('fixture cannot drift');
      const { driver, attachment, artifacts: { v1, v2 } } = fx;
      await driver.install(attachment, v1, null);

      await fx.driftTo(v2.digest);

      const [running] = await driver.observe();
      assert.equal(running?.digest, v2.digest);
      await assertDrift(driver.install(attachment, v1, v1.digest), [v1.digest, v2.digest]);
      const recovered = await driver.install(attachment, v1, v2.digest);
      assert.equal(recovered.changed, true);
      assert.equal(recovered.running.digest, v1.digest);
    });

    it('check(): an interface deleted is broken NO_INTERFACE, and the module returns with it', async (t) => {
      const fx = await fixture(t);
      if (!fx.deleteInterface || !fx.createInterface) return t.skip('fixture cannot delete interfaces');
      const { driver, attachment, artifacts: { v1, v2 } } = fx;
      const key = formatAttachment(attachment);
      const installed = await driver.install(attachment, v1, null);
      assert.deepEqual(await driver.check(), [{ attachment: key, status: 'running', running: installed.running, reattached: false }]);

      await fx.deleteInterface();
      const [gone, ...more] = await driver.check();
      assert.deepEqual(more, []);
      assert.ok(gone?.status === 'broken', JSON.stringify(gone));
      assert.deepEqual([gone.reason, gone.digest, gone.name, gone.version], ['NO_INTERFACE', v1.digest, v1.manifest.name, v1.manifest.version]);
      assert.deepEqual(await driver.observe(), [], 'nothing runs');
      assert.equal(await driver.stats(attachment), null);
      await assertBpfleetError(driver.install(attachment, v2, null), { code: 'NOT_FOUND', reason: 'NO_INTERFACE' });

      await fx.createInterface();
      const [back] = await driver.check();
      assert.ok(back?.status === 'running', JSON.stringify(back));
      assert.deepEqual([back.reattached, back.running.progId, back.running.digest], [true, installed.running.progId, v1.digest]);
      assert.notEqual(back.running.linkId, installed.running.linkId);
      assert.deepEqual(await driver.observe(), [back.running]);
      assert.equal((await driver.install(attachment, v2, v1.digest)).running.digest, v2.digest, 'and upgrades as before');
    });
  });
}

interface ExpectedError {
  code: string;
  reason: string;
  message?: RegExp;
}

async function assertBpfleetError(promise: Promise<unknown>, expected: ExpectedError): Promise<BpfleetError> {
  let caught: unknown;
  await assert.rejects(promise, (err) => {
    caught = err;
    return true;
  });
  assert.ok(caught instanceof BpfleetError, `expected a BpfleetError, got ${String(caught)}`);
  assert.deepEqual({ code: caught.code, reason: caught.reason }, { code: expected.code, reason: expected.reason }, caught.message);
  if (expected.message) assert.match(caught.message, expected.message);
  return caught;
}

async function assertDrift(promise: Promise<unknown>, digests: string[]): Promise<void> {
  const error = await assertBpfleetError(promise, { code: 'FAILED_PRECONDITION', reason: 'DRIFT' });
  for (const digest of digests) assert.ok(error.message.includes(shortDigest(digest)), `"${error.message}" names ${digest}`);
}

function sortByAttachment(modules: RunningModule[]): RunningModule[] {
  return [...modules].sort((a, b) => a.attachment.localeCompare(b.attachment));
}
