import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { digestOf } from '../common/digest.js';
import { BpfleetError } from '../common/errors.js';
import type { GetStateResponse, Intent } from '../proto/gen/bpfleet/v1/agent.js';
import type { Module, ModuleRef } from '../proto/gen/bpfleet/v1/module.js';
import type { ModuleArtifact } from './dataplane/driver.js';
import { simArtifact } from './dataplane/sim/artifacts.js';
import { SimDriver } from './dataplane/sim/sim-driver.js';
import { Reconciler, type ReconcilerOptions, type ModuleSource, type StateSink } from './reconciler.js';

const HOST = 'edge-1';
const ATTACHMENT = 'xdp:eth0';
const XDP = { hook: 'xdp', iface: 'eth0' } as const;
const V1 = simArtifact({ name: 'pass-counter', version: '1.0.0' });
const V2 = simArtifact({ name: 'pass-counter', version: '2.0.0' });

const refOf = (a: ModuleArtifact): ModuleRef => ({ name: a.manifest.name, version: a.manifest.version, digest: a.digest });

/** The registry and object store as the agent sees them, in memory. */
class FakeSource implements ModuleSource {
  readonly modules = new Map<string, Module>();
  readonly objects = new Map<string, Uint8Array>();
  readonly objectReads: string[] = [];

  constructor(...artifacts: ModuleArtifact[]) {
    for (const a of artifacts) this.push(a);
  }

  push(a: ModuleArtifact): void {
    this.modules.set(`${a.manifest.name}@${a.manifest.version}`, {
      manifest: a.manifest, digest: a.digest, size: a.object.length, objectKey: a.digest, pushedAt: '', pushedBy: 'test',
      signature: Buffer.alloc(0), keyId: '',
    });
    this.objects.set(a.digest, a.object);
  }

  async module(name: string, version: string): Promise<Module | null> {
    return this.modules.get(`${name}@${version}`) ?? null;
  }

  async object(digest: string): Promise<Uint8Array> {
    this.objectReads.push(digest);
    const bytes = this.objects.get(digest);
    if (!bytes) throw new BpfleetError('NOT_FOUND', 'ARTIFACT_MISSING', `no object ${digest}`);
    return bytes;
  }
}

class FakeSink implements StateSink {
  readonly reports: GetStateResponse[] = [];
  async report(state: GetStateResponse): Promise<void> {
    this.reports.push(structuredClone(state));
  }
}

function intent(over: Partial<Intent> = {}): Intent {
  return {
    host: HOST, attachment: ATTACHMENT, module: refOf(V1), expectedDigest: '',
    rolloutId: 'r-1', generation: 1, leaderEpoch: 1, ...over,
  };
}

function setup(opts: { driver?: SimDriver; source?: FakeSource; options?: ReconcilerOptions } = {}) {
  const driver = opts.driver ?? new SimDriver({ now: () => 0 });
  const source = opts.source ?? new FakeSource(V1, V2);
  const sink = new FakeSink();
  const reconciler = new Reconciler(HOST, driver, source, sink, () => new Date('2026-01-01T00:00:00.000Z'), opts.options);
  return { driver, source, sink, reconciler };
}

/** Everything an apply could have changed, to show a refused one changed none of it. */
async function snapshot(s: ReturnType<typeof setup>) {
  return {
    running: await s.driver.observe(),
    state: s.reconciler.state(),
    history: [...s.reconciler.history],
    reports: s.sink.reports.length,
  };
}

const refused = (code: string, reason: string, pattern?: RegExp) => (err: unknown) => {
  assert.ok(err instanceof BpfleetError, `not a BpfleetError: ${err}`);
  assert.equal(err.code, code);
  assert.equal(err.reason, reason);
  if (pattern) assert.match(err.message, pattern);
  return true;
};

describe('Reconciler.apply', () => {
  it('installs the module, reports the state with its fencing marks and records the change', async () => {
    const s = setup();
    const res = await s.reconciler.apply(intent({ generation: 3, leaderEpoch: 2, rolloutId: 'r-9' }));
    assert.equal(res.changed, true);
    assert.deepEqual(res.state.module, refOf(V1));
    assert.ok(res.state.progId > 0);
    assert.equal(res.state.generation, 3);
    assert.equal(res.state.leaderEpoch, 2);
    assert.equal(res.state.rolloutId, 'r-9');

    const [running] = await s.driver.observe();
    assert.equal(running!.digest, V1.digest);
    assert.equal(running!.progId, res.state.progId);

    assert.deepEqual(s.reconciler.state(), { host: HOST, labels: {}, attachments: [res.state] });
    assert.deepEqual(s.sink.reports.at(-1), s.reconciler.state(), 'what runs is reported');
    assert.deepEqual(s.reconciler.history, [{ at: '2026-01-01T00:00:00.000Z', attachment: ATTACHMENT, digest: V1.digest, generation: 3, rolloutId: 'r-9' }]);
  });

  it('is idempotent: the same intent again changes nothing and records nothing', async () => {
    const s = setup();
    const first = await s.reconciler.apply(intent());
    const again = await s.reconciler.apply(intent());
    assert.equal(again.changed, false);
    assert.equal(again.state.progId, first.state.progId, 'not reloaded');
    assert.equal(s.reconciler.history.length, 1);

    // A newer intent for what already runs is a no-op, and takes no fencing marks: a request
    // that changed nothing must not be able to fence out the leader's next intents.
    const newer = await s.reconciler.apply(intent({ generation: 5 }));
    assert.equal(newer.changed, false);
    assert.equal(newer.state.generation, 1);
    assert.equal(s.reconciler.history.length, 1);
    assert.equal((await s.reconciler.apply(intent({ module: refOf(V2), expectedDigest: V1.digest, generation: 2 }))).changed, true);
  });

  it('cannot be poisoned: a no-op carrying huge marks does not block later intents, also after a restart', async () => {
    const s = setup();
    await s.reconciler.apply(intent({ generation: 1, leaderEpoch: 1 }));
    const huge = Number.MAX_SAFE_INTEGER;
    assert.equal((await s.reconciler.apply(intent({ generation: huge, leaderEpoch: huge }))).changed, false);
    assert.equal((await s.reconciler.apply(intent({ module: undefined, attachment: 'xdp:eth1', expectedDigest: '', generation: huge, leaderEpoch: huge }))).changed, false, 'a removal of nothing is a no-op too');
    assert.deepEqual(s.reconciler.state().attachments.map((a) => [a.generation, a.leaderEpoch]), [[1, 1]], 'no forged mark reported');
    const restarted = setup({ driver: new SimDriver({ host: s.driver.host, now: () => 0 }) });
    await restarted.reconciler.adopt(s.sink.reports.at(-1)!.attachments);
    const next = await restarted.reconciler.apply(intent({ module: refOf(V2), expectedDigest: V1.digest, generation: 2, leaderEpoch: 1 }));
    assert.equal(next.changed, true, 'the leader\'s next intent still applies');
    const fresh = await restarted.reconciler.apply(intent({ attachment: 'xdp:eth1', generation: 1, leaderEpoch: 1 }));
    assert.equal(fresh.changed, true);
  });

  it('refuses an epoch above the current leader\'s, reading it only for epochs it has not confirmed', async () => {
    let reads = 0;
    let leader: number | null = 7;
    const s = setup({ options: { leaderEpoch: async () => (reads++, leader) } });
    await assert.rejects(s.reconciler.apply(intent({ leaderEpoch: 8 })), refused('FAILED_PRECONDITION', 'EPOCH_AHEAD_OF_LEADER', /epoch 8, but the current leader's epoch is 7/));
    assert.deepEqual(await s.driver.observe(), [], 'nothing installed');
    await s.reconciler.apply(intent({ leaderEpoch: 7 }));
    await s.reconciler.apply(intent({ leaderEpoch: 7, generation: 2 }));
    await s.reconciler.apply(intent({ leaderEpoch: 6, generation: 3, attachment: 'xdp:eth1' }));
    assert.equal(reads, 1, 'the read that refused epoch 8 confirmed epoch 7: no read for 7 or lower');
    leader = null;
    await assert.rejects(s.reconciler.apply(intent({ leaderEpoch: 9 })), refused('FAILED_PRECONDITION', 'EPOCH_AHEAD_OF_LEADER', /no leader elected/));
  });

  it('upgrades in place when the expected digest runs', async () => {
    const s = setup();
    const v1 = await s.reconciler.apply(intent());
    const v2 = await s.reconciler.apply(intent({ module: refOf(V2), expectedDigest: V1.digest, generation: 2 }));
    assert.equal(v2.changed, true);
    assert.notEqual(v2.state.progId, v1.state.progId);
    assert.equal(v2.state.linkId, v1.state.linkId, 'the same link, its program replaced');
    assert.deepEqual(s.reconciler.history.map((h) => [h.digest, h.generation]), [[V1.digest, 1], [V2.digest, 2]]);
  });

  it('refuses an older generation from the same leader epoch, changing nothing', async () => {
    const s = setup();
    await s.reconciler.apply(intent({ generation: 1 }));
    await s.reconciler.apply(intent({ module: refOf(V2), expectedDigest: V1.digest, generation: 2 }));
    const before = await snapshot(s);
    // A late replay of generation 1 would move the host back to v1.
    await assert.rejects(
      s.reconciler.apply(intent({ module: refOf(V1), expectedDigest: V2.digest, generation: 1 })),
      refused('FAILED_PRECONDITION', 'STALE_GENERATION', /generation 1 is older than 2 already applied on xdp:eth0/),
    );
    assert.deepEqual(await snapshot(s), before);
  });

  it('refuses an intent from an older leader epoch whatever its generation', async () => {
    const s = setup();
    await s.reconciler.apply(intent({ generation: 1, leaderEpoch: 5 }));
    const before = await snapshot(s);
    await assert.rejects(
      s.reconciler.apply(intent({ module: refOf(V2), expectedDigest: V1.digest, generation: 99, leaderEpoch: 4 })),
      refused('FAILED_PRECONDITION', 'STALE_EPOCH', /leader epoch 4, but epoch 5 already applied/),
    );
    assert.deepEqual(await snapshot(s), before);
  });

  it('refuses an intent meant for another host', async () => {
    const s = setup();
    const before = await snapshot(s);
    await assert.rejects(s.reconciler.apply(intent({ host: 'edge-2' })), refused('INVALID_ARGUMENT', 'WRONG_HOST', /intent for host "edge-2" sent to edge-1/));
    assert.deepEqual(await snapshot(s), before);
    assert.deepEqual(s.source.objectReads, [], 'nothing was even fetched');
  });

  it('refuses a hook the host cannot attach', async () => {
    const driver = new SimDriver({ now: () => 0 });
    driver.capabilities = () => ['xdp'];
    const s = setup({ driver });
    await assert.rejects(s.reconciler.apply(intent({ attachment: 'tcx-ingress:eth0' })), refused('FAILED_PRECONDITION', 'HOOK_UNSUPPORTED', /supports: xdp/));
  });

  it('refuses a module the registry does not know', async () => {
    const s = setup();
    await assert.rejects(
      s.reconciler.apply(intent({ module: { name: 'pass-counter', version: '9.9.9', digest: V2.digest } })),
      refused('NOT_FOUND', 'MODULE_NOT_FOUND', /pass-counter@9\.9\.9/),
    );
    assert.deepEqual(await s.driver.observe(), []);
  });

  it('refuses an intent whose digest is not the one registered, before fetching anything', async () => {
    const s = setup();
    await s.reconciler.apply(intent());
    const before = await snapshot(s);
    s.source.objectReads.length = 0;
    await assert.rejects(
      s.reconciler.apply(intent({ module: { ...refOf(V2), digest: V1.digest }, expectedDigest: V1.digest, generation: 2 })),
      refused('FAILED_PRECONDITION', 'DIGEST_MISMATCH', /the registry has sha256:/),
    );
    assert.deepEqual(s.source.objectReads, []);
    assert.deepEqual(await snapshot(s), before);
  });

  it('refuses an object whose bytes do not hash to the digest, changing nothing', async () => {
    const s = setup();
    await s.reconciler.apply(intent());
    const before = await snapshot(s);
    // Same length, last byte flipped: only the hash can tell.
    const tampered = new Uint8Array(V2.object);
    tampered[tampered.length - 1] = tampered.at(-1)! ^ 0xff;
    s.source.objects.set(V2.digest, tampered);
    await assert.rejects(
      s.reconciler.apply(intent({ module: refOf(V2), expectedDigest: V1.digest, generation: 2 })),
      refused('FAILED_PRECONDITION', 'DIGEST_MISMATCH', new RegExp(`has digest ${digestOf(tampered)}, expected ${V2.digest}`)),
    );
    assert.deepEqual(await snapshot(s), before);
  });

  it('passes a drift refusal of the dataplane through, changing nothing', async () => {
    const s = setup();
    await s.reconciler.apply(intent());
    s.driver.driftNow(XDP, `sha256:${'f'.repeat(64)}`);
    const before = await snapshot(s);
    await assert.rejects(
      s.reconciler.apply(intent({ module: refOf(V2), expectedDigest: V1.digest, generation: 2 })),
      refused('FAILED_PRECONDITION', 'DRIFT'),
    );
    assert.deepEqual(await snapshot(s), before);
  });

  it('runs applies to one attachment one after the other, in arrival order', async () => {
    const s = setup({ driver: new SimDriver({ now: () => 0, faults: { loadDelayMs: 20 } }) });
    const first = s.reconciler.apply(intent());
    const second = s.reconciler.apply(intent({ module: refOf(V2), expectedDigest: V1.digest, generation: 2 }));
    const [a, b] = await Promise.all([first, second]);
    assert.equal(a.changed, true);
    assert.equal(b.changed, true, 'the second saw v1 running, as it expected');
    assert.equal((await s.driver.observe())[0]!.digest, V2.digest);
  });

  it('a failed apply does not block the next one on the same attachment', async () => {
    const s = setup();
    const bad = s.reconciler.apply(intent({ host: 'elsewhere' }));
    const good = s.reconciler.apply(intent());
    await assert.rejects(bad);
    assert.equal((await good).changed, true);
  });
});

describe('Reconciler.apply: removal (no module)', () => {
  it('detaches what runs, reports the attachment gone and records the change', async () => {
    const s = setup();
    await s.reconciler.apply(intent());
    const res = await s.reconciler.apply(intent({ module: undefined, expectedDigest: V1.digest, generation: 2, rolloutId: 'r-2' }));
    assert.equal(res.changed, true);
    assert.equal(res.state.module, undefined);
    assert.equal(res.state.generation, 2);
    assert.deepEqual(await s.driver.observe(), []);
    assert.deepEqual(s.reconciler.state().attachments, []);
    assert.deepEqual(s.sink.reports.at(-1), { host: HOST, labels: {}, attachments: [] });
    assert.deepEqual(s.reconciler.history.at(-1), { at: '2026-01-01T00:00:00.000Z', attachment: ATTACHMENT, digest: '', generation: 2, rolloutId: 'r-2' });
  });

  it('treats an empty digest like no module', async () => {
    const s = setup();
    await s.reconciler.apply(intent());
    const res = await s.reconciler.apply(intent({ module: { name: 'pass-counter', version: '', digest: '' }, expectedDigest: V1.digest, generation: 2 }));
    assert.equal(res.changed, true);
    assert.deepEqual(await s.driver.observe(), []);
  });

  it('is idempotent: removing nothing changes and records nothing', async () => {
    const s = setup();
    const res = await s.reconciler.apply(intent({ module: undefined, expectedDigest: V1.digest }));
    assert.equal(res.changed, false);
    assert.deepEqual(s.reconciler.history, []);
    await s.reconciler.apply(intent());
    await s.reconciler.apply(intent({ module: undefined, expectedDigest: V1.digest, generation: 2 }));
    const again = await s.reconciler.apply(intent({ module: undefined, expectedDigest: V1.digest, generation: 2 }));
    assert.equal(again.changed, false);
    assert.equal(s.reconciler.history.length, 2);
  });

  it('refuses to detach a program it did not expect', async () => {
    const s = setup();
    await s.reconciler.apply(intent());
    const foreign = `sha256:${'f'.repeat(64)}`;
    s.driver.driftNow(XDP, foreign);
    const history = [...s.reconciler.history];
    await assert.rejects(
      s.reconciler.apply(intent({ module: undefined, expectedDigest: V1.digest, generation: 2 })),
      refused('FAILED_PRECONDITION', 'DRIFT', new RegExp(`runs ${foreign}, expected ${V1.digest}`)),
    );
    assert.equal((await s.driver.observe())[0]!.digest, foreign, 'the foreign program still runs');
    assert.deepEqual(s.reconciler.history, history);
  });

  it('still fences after a removal: a late older intent cannot re-install what was removed', async () => {
    const s = setup();
    await s.reconciler.apply(intent({ generation: 1 }));
    await s.reconciler.apply(intent({ module: undefined, expectedDigest: V1.digest, generation: 2 }));
    await assert.rejects(s.reconciler.apply(intent({ generation: 1 })), refused('FAILED_PRECONDITION', 'STALE_GENERATION'));
    await assert.rejects(s.reconciler.apply(intent({ generation: 3, leaderEpoch: 0 })), refused('FAILED_PRECONDITION', 'STALE_EPOCH'));
    assert.deepEqual(await s.driver.observe(), []);
    assert.equal((await s.reconciler.apply(intent({ generation: 3 }))).changed, true, 'a newer intent still installs');
  });
});

describe('Reconciler.adopt', () => {
  it('adopts what a previous agent process left running, with the marks it last reported', async () => {
    const first = setup();
    const installed = await first.reconciler.apply(intent({ generation: 4, leaderEpoch: 2, rolloutId: 'r-7' }));

    // The agent restarts: a new driver on the same simulated kernel, a new reconciler.
    const s = setup({ driver: new SimDriver({ host: first.driver.host, now: () => 0 }) });
    const adopted = await s.reconciler.adopt(first.reconciler.state().attachments);
    assert.deepEqual(adopted.map((r) => r.digest), [V1.digest]);
    const [state] = s.reconciler.state().attachments;
    assert.equal(state!.progId, installed.state.progId, 'the running program is kept, not reloaded');
    assert.equal(state!.generation, 4);
    assert.equal(state!.leaderEpoch, 2);
    assert.equal(state!.rolloutId, 'r-7');
    assert.deepEqual(s.sink.reports.at(-1), s.reconciler.state());

    await assert.rejects(s.reconciler.apply(intent({ generation: 3, leaderEpoch: 2 })), refused('FAILED_PRECONDITION', 'STALE_GENERATION'));
    const replay = await s.reconciler.apply(intent({ generation: 4, leaderEpoch: 2 }));
    assert.equal(replay.changed, false);
    assert.deepEqual(s.reconciler.history, []);
  });

  it('does not trust marks reported for a digest that no longer runs', async () => {
    const first = setup();
    await first.reconciler.apply(intent({ generation: 4 }));
    const reported = first.reconciler.state().attachments;
    first.driver.driftNow(XDP, V2.digest);

    const s = setup({ driver: new SimDriver({ host: first.driver.host, now: () => 0 }) });
    await s.reconciler.adopt(reported);
    const [state] = s.reconciler.state().attachments;
    assert.equal(state!.module!.digest, V2.digest);
    assert.equal(state!.generation, 0);
  });
});

describe('Reconciler.onChange', () => {
  it('tells listeners about applies that changed the dataplane, not about no-ops or refusals', async () => {
    const s = setup();
    const seen: string[] = [];
    const unsubscribe = s.reconciler.onChange((attachment) => seen.push(attachment));
    await s.reconciler.apply(intent());
    await s.reconciler.apply(intent({ generation: 2 }));
    await assert.rejects(s.reconciler.apply(intent({ module: refOf(V2), expectedDigest: 'sha256:' + '0'.repeat(64), generation: 3 })));
    assert.deepEqual(seen, [ATTACHMENT]);
    unsubscribe();
    await s.reconciler.apply(intent({ module: refOf(V2), expectedDigest: V1.digest, generation: 4 }));
    assert.deepEqual(seen, [ATTACHMENT], 'an unsubscribed listener hears nothing');
  });
});
