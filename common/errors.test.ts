import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Metadata, status } from '@grpc/grpc-js';
import { BpfleetError, ERROR_REASONS, fromServiceError, toServiceError, type ErrorCode } from './errors.js';

const CODES: ErrorCode[] = [
  'INVALID_ARGUMENT', 'NOT_FOUND', 'ALREADY_EXISTS', 'FAILED_PRECONDITION', 'ABORTED',
  'UNAVAILABLE', 'DEADLINE_EXCEEDED', 'PERMISSION_DENIED', 'UNIMPLEMENTED', 'INTERNAL',
];

describe('toServiceError → fromServiceError', () => {
  for (const code of CODES) {
    it(`keeps ${code}, the reason and the message`, () => {
      const back = fromServiceError(toServiceError(new BpfleetError(code, 'STALE_EPOCH', `failed with ${code}`)));
      assert.ok(back instanceof BpfleetError);
      assert.equal(back.code, code);
      assert.equal(back.reason, 'STALE_EPOCH');
      assert.equal(back.message, `failed with ${code}`);
      assert.equal(back.detail, undefined);
    });
  }

  it('uses the gRPC status code of the same name on the wire', () => {
    assert.equal(toServiceError(new BpfleetError('FAILED_PRECONDITION', 'DRIFT', 'x')).code, status.FAILED_PRECONDITION);
    assert.equal(toServiceError(new BpfleetError('NOT_FOUND', 'MODULE_NOT_FOUND', 'x')).code, status.NOT_FOUND);
  });

  it('keeps a long multi-line, non-ASCII detail such as a verifier log byte for byte', () => {
    const log = `0: (b7) r0 = 0\n1: (95) exit\nR1 invalid mem access 'scalar' — ünïcode\n${'x'.repeat(10_000)}`;
    const back = fromServiceError(toServiceError(new BpfleetError('INVALID_ARGUMENT', 'VERIFIER_REJECTED', 'load pass_counter: verifier rejected it', log)));
    assert.equal(back.reason, 'VERIFIER_REJECTED');
    assert.equal(back.detail, log);
  });

  it('turns an unexpected error into INTERNAL with its message', () => {
    const se = toServiceError(new TypeError('x is undefined'));
    assert.equal(se.code, status.INTERNAL);
    const back = fromServiceError(se);
    assert.equal(back.code, 'INTERNAL');
    assert.equal(back.reason, 'INTERNAL');
    assert.equal(back.message, 'x is undefined');
    assert.equal(fromServiceError(toServiceError('a string')).message, 'a string');
  });
});

describe('fromServiceError', () => {
  it('passes a BpfleetError through untouched', () => {
    const e = new BpfleetError('ABORTED', 'NOT_LEADER', 'x');
    assert.equal(fromServiceError(e), e);
  });

  it('reads a plain gRPC error without bpfleet metadata: the code doubles as the reason', () => {
    const err = Object.assign(new Error('14 UNAVAILABLE: No connection established'), { code: status.UNAVAILABLE, details: 'No connection established', metadata: new Metadata() });
    const back = fromServiceError(err);
    assert.equal(back.code, 'UNAVAILABLE');
    assert.equal(back.reason, 'UNAVAILABLE');
    assert.equal(back.message, 'No connection established');
    assert.equal(back.cause, err);
  });

  it('reads a reason it does not know (a newer server\'s) as the error class, never as free text', () => {
    const metadata = new Metadata();
    metadata.set('bpfleet-reason', 'SOMETHING_NEW');
    const back = fromServiceError({ code: status.FAILED_PRECONDITION, details: 'x', metadata });
    assert.equal(back.reason, 'FAILED_PRECONDITION');
  });

  it('lists each reason once', () => {
    assert.equal(new Set(ERROR_REASONS).size, ERROR_REASONS.length);
  });

  it('falls back to the message, then the code, when there are no details', () => {
    assert.equal(fromServiceError({ code: status.NOT_FOUND, details: '', message: 'gone' }).message, 'gone');
    assert.equal(fromServiceError({ code: status.NOT_FOUND }).message, 'NOT_FOUND');
  });

  it('anything without a numeric code is INTERNAL', () => {
    const back = fromServiceError(new Error('socket hang up'));
    assert.equal(back.code, 'INTERNAL');
    assert.equal(back.message, 'socket hang up');
    assert.equal(fromServiceError(undefined).code, 'INTERNAL');
  });
});

describe('BpfleetError', () => {
  it('is an Error with a name, structured fields and a cause', () => {
    const cause = new Error('ENOENT');
    const e = new BpfleetError('NOT_FOUND', 'NO_INTERFACE', 'no interface eth9', undefined, { cause });
    assert.ok(e instanceof Error);
    assert.equal(e.name, 'BpfleetError');
    assert.equal(e.cause, cause);
    assert.match(String(e), /^BpfleetError: no interface eth9$/);
  });
});
