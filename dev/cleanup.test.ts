import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CleanupStack } from './cleanup.js';

test('runs steps newest first, continues past failures and reports each one', async () => {
  const stack = new CleanupStack();
  const ran: string[] = [];
  stack.defer(() => ran.push('first'), 'first');
  stack.defer(async () => {
    ran.push('second');
    throw new Error('boom');
  }, 'second');
  stack.defer(() => {
    ran.push('third');
  }, 'third');

  await assert.rejects(stack.runAll(), (err: unknown) => {
    assert.ok(err instanceof AggregateError);
    assert.equal(err.errors.length, 1);
    assert.match(String((err.errors[0] as Error).message), /cleanup "second": boom/);
    return true;
  });
  assert.deepEqual(ran, ['third', 'second', 'first']);
  assert.equal(stack.size, 0);
  await stack.runAll();
});

test('a hanging step times out and the rest still run', async () => {
  const stack = new CleanupStack();
  const ran: string[] = [];
  stack.defer(() => ran.push('after the hang'), 'last');
  stack.defer(() => new Promise(() => {}), 'hangs');
  await assert.rejects(stack.runAll({ stepTimeoutMs: 50 }), /hangs did not finish within 50 ms/);
  assert.deepEqual(ran, ['after the hang']);
});
