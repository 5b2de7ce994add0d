import assert from 'node:assert/strict';
import { test } from 'node:test';
import { skipOrFail } from './prereqs.js';

function withCi<T>(value: string | undefined, fn: () => T): T {
  const saved = process.env.CI;
  if (value === undefined) delete process.env.CI;
  else process.env.CI = value;
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env.CI;
    else process.env.CI = saved;
  }
}

test('nothing missing: proceed without skipping', () => {
  const skipped: (string | undefined)[] = [];
  assert.equal(withCi('true', () => skipOrFail({ skip: (m) => skipped.push(m) }, [])), true);
  assert.deepEqual(skipped, []);
});

test('something missing: skip locally, saying what', () => {
  const skipped: (string | undefined)[] = [];
  assert.equal(withCi(undefined, () => skipOrFail({ skip: (m) => skipped.push(m) }, ['etcd: etcd not installed'])), false);
  assert.deepEqual(skipped, ['missing: etcd: etcd not installed']);
});

test('something missing under CI=true: fail, never skip', () => {
  const skipped: (string | undefined)[] = [];
  assert.throws(
    () => withCi('true', () => skipOrFail({ skip: (m) => skipped.push(m) }, ['root: not root'])),
    /missing: root: not root \(CI=true/,
  );
  assert.deepEqual(skipped, []);
});
