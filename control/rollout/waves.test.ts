import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Step } from '../../proto/gen/bpfleet/v1/rollout.js';
import { maxUnavailableOf, planWaves, targetsPerStep, waveOrder } from './waves.js';

const canary = (value: number): Step => ({ kind: { $case: 'canary', value } });
const percent = (value: number): Step => ({ kind: { $case: 'percent', value } });
const bake = (value: number): Step => ({ kind: { $case: 'bakeMs', value } });
const pause: Step = { kind: { $case: 'pause', value: true } };

const hosts = (n: number) => Array.from({ length: n }, (_, i) => `host-${i}`);

describe('targetsPerStep', () => {
  it('counts hosts cumulatively; bake and pause steps keep the previous target', () => {
    assert.deepEqual(targetsPerStep([canary(1), bake(1000), percent(50), pause, percent(100)], 10), [1, 1, 5, 5, 10]);
  });

  it('rounds percentages up, so a small percentage still moves a host', () => {
    assert.deepEqual(targetsPerStep([percent(10)], 3), [1]);
    assert.deepEqual(targetsPerStep([percent(34)], 3), [2]);
    assert.deepEqual(targetsPerStep([percent(33.4), percent(66.7)], 3), [2, 3]);
    assert.deepEqual(targetsPerStep([percent(25)], 8), [2], 'exact fractions are not rounded up further');
  });

  it('caps a canary count at the fleet size', () => {
    assert.deepEqual(targetsPerStep([canary(5)], 3), [3]);
  });

  it('never goes backwards when a later step asks for fewer hosts', () => {
    assert.deepEqual(targetsPerStep([percent(50), canary(1), percent(20)], 10), [5, 5, 5]);
  });

  it('is all zeros before any update step and for an empty fleet', () => {
    assert.deepEqual(targetsPerStep([bake(10), canary(1)], 4), [0, 1]);
    assert.deepEqual(targetsPerStep([canary(1), percent(100)], 0), [0, 0]);
  });
});

describe('waveOrder and planWaves', () => {
  it('is a permutation of the hosts, independent of input order', () => {
    const hs = hosts(12);
    const a = waveOrder('r-1', hs);
    assert.deepEqual([...a].sort(), [...hs].sort());
    assert.deepEqual(waveOrder('r-1', [...hs].reverse()), a);
    assert.notDeepEqual(waveOrder('r-2', hs), a, 'another rollout orders the fleet differently');
  });

  it('puts each host in the first step whose target reaches it, the rest in the implicit last wave', () => {
    const steps = [canary(1), bake(1000), percent(50)];
    const hs = hosts(6);
    const plan = planWaves('r-1', steps, hs);
    const order = waveOrder('r-1', hs);
    assert.deepEqual(order.map((h) => plan.get(h)), [0, 2, 2, 3, 3, 3]);
  });

  it('puts nobody in a bake step of its own', () => {
    const plan = planWaves('r-9', [canary(2), bake(5), pause, percent(100)], hosts(9));
    const waves = new Set(plan.values());
    assert.ok(!waves.has(1) && !waves.has(2));
    assert.deepEqual([...plan.values()].filter((w) => w === 0).length, 2);
    assert.deepEqual([...plan.values()].filter((w) => w === 3).length, 7);
  });
});

describe('maxUnavailableOf', () => {
  it('takes a plain count as is', () => {
    assert.equal(maxUnavailableOf('1', 10), 1);
    assert.equal(maxUnavailableOf('3', 10), 3);
    assert.equal(maxUnavailableOf(' 4 ', 10), 4);
  });

  it('takes a percentage of the fleet, rounded down', () => {
    assert.equal(maxUnavailableOf('25%', 10), 2);
    assert.equal(maxUnavailableOf('50%', 10), 5);
    assert.equal(maxUnavailableOf('100%', 7), 7);
  });

  it('never allows fewer than one host, or the rollout could not move', () => {
    assert.equal(maxUnavailableOf('0', 10), 1);
    assert.equal(maxUnavailableOf('25%', 3), 1);
    assert.equal(maxUnavailableOf('0%', 10), 1);
  });

  it('falls back to one host for text that is not a count', () => {
    for (const junk of ['', 'two', '-1', '1.5', '25 %', '%', '10%%']) assert.equal(maxUnavailableOf(junk, 10), 1, junk);
  });
});
