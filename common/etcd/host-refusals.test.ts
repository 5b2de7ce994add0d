import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { refusedRegistrations } from './host-refusals.js';

/** refusedRegistrations over a whole fleet: key name → the name its value claims. */
const refused = (claims: Record<string, string>) => {
  const map = new Map(Object.entries(claims));
  return refusedRegistrations(map, (n) => map.has(n)).map((r) => `${r.host}:${r.reason}`);
};

describe('host registrations refused by the control plane', () => {
  test('a registration under its own name is planned', () => {
    assert.deepEqual(refused({ h1: 'h1', h2: 'h2' }), []);
  });

  test('a name that differs from the key is NAME_MISMATCH', () => {
    assert.deepEqual(refused({ h1: 'h1', h2: 'elsewhere' }), ['h2:NAME_MISMATCH']);
  });

  test('claiming another registered host\'s name is DUPLICATE_NAME, and only the claimant is refused', () => {
    assert.deepEqual(refused({ h1: 'h1', h3: 'h1' }), ['h3:DUPLICATE_NAME']);
  });

  test('two registrations claiming one unregistered name are both DUPLICATE_NAME', () => {
    assert.deepEqual(refused({ a: 'ghost', b: 'ghost', c: 'c' }), ['a:DUPLICATE_NAME', 'b:DUPLICATE_NAME']);
  });

  test('two registrations swapping names are both refused', () => {
    assert.deepEqual(refused({ a: 'b', b: 'a' }), ['a:DUPLICATE_NAME', 'b:DUPLICATE_NAME']);
  });

  test('the registered names may come from outside the claims (the directory passes only mismatched ones)', () => {
    const out = refusedRegistrations([['h9', 'h1']], (n) => n === 'h1' || n === 'h9');
    assert.deepEqual(out.map((r) => [r.host, r.claimed, r.reason]), [['h9', 'h1', 'DUPLICATE_NAME']]);
    assert.match(out[0]!.message, /key of h9 claims "h1"/);
  });

  test('the message quotes at most 64 characters of the claimed name', () => {
    const [r] = refusedRegistrations([['h1', 'x'.repeat(500)]], () => false);
    assert.equal(r!.reason, 'NAME_MISMATCH');
    assert.ok(r!.message.length < 140, r!.message);
  });
});
