import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { inert } from './inert.js';

describe('inert', () => {
  it('makes escape sequences, C1 controls, DEL and carriage returns visible, keeps tabs, newlines and Unicode', () => {
    assert.equal(inert('ok\x1b]52;c;ZWNobw==\x07\x1b[2J\u009b31m\x7f\r!'), 'ok\\x1b]52;c;ZWNobw==\\x07\\x1b[2J\\x9b31m\\x7f\\x0d!');
    assert.equal(inert('a\tb\nc — ✓ █'), 'a\tb\nc — ✓ █');
  });
});
