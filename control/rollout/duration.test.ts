import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatDuration, parseDuration } from './duration.js';

describe('parseDuration', () => {
  it('reads every unit', () => {
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('30s'), 30_000);
    assert.equal(parseDuration('5m'), 300_000);
    assert.equal(parseDuration('2h'), 7_200_000);
    assert.equal(parseDuration('1.5m'), 90_000);
    assert.equal(parseDuration(' 10s '), 10_000);
  });

  it('refuses what is not a duration', () => {
    for (const t of ['', '10', 's', '10 s', '-1s', '1d', '1e3ms', '1.s']) assert.equal(parseDuration(t), null, t);
  });
});

describe('formatDuration', () => {
  it('uses the largest unit that divides evenly', () => {
    assert.equal(formatDuration(7_200_000), '2h');
    assert.equal(formatDuration(90_000), '90s');
    assert.equal(formatDuration(120_000), '2m');
    assert.equal(formatDuration(1500), '1500ms');
    assert.equal(formatDuration(0), '0s');
  });

  it('round-trips through parseDuration', () => {
    for (const ms of [0, 1, 999, 1000, 61_000, 60_000, 3_600_000, 5_400_000]) assert.equal(parseDuration(formatDuration(ms)), ms);
  });
});
