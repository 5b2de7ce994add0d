/**
 * The request-edge bounds (kind 8 of issue 11) as pure logic: a field over its limit is
 * refused naming the field and the limit, an error quotes at most a short prefix of any
 * input, a request that is not a protobuf message is INVALID_ARGUMENT, and no error sent on
 * the wire is longer than its caps.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { ControlServiceService } from '../proto/gen/bpfleet/v1/control.js';
import { BpfleetError, toServiceError, WIRE_DETAIL_BYTES, WIRE_MESSAGE_CHARS } from './errors.js';
import { malformedRequest, tolerantService } from './grpc-malformed.js';
import { bounded, boundedMap, echo, ECHO_CHARS, FIELD_BYTES } from './limits.js';

const FOUR_MIB = 'r'.repeat(4 << 20);

describe('request limits', () => {
  it('a 4 MiB id is refused naming the field and the limit, in a short message', () => {
    assert.throws(() => bounded('id', FOUR_MIB, FIELD_BYTES.id), (err: unknown) =>
      err instanceof BpfleetError && err.code === 'INVALID_ARGUMENT' && err.reason === 'FIELD_TOO_LONG'
      && err.message === `id: ${4 << 20} bytes is over the 128-byte limit`);
    assert.equal(bounded('id', 'pass-counter-260101000000-ab12', FIELD_BYTES.id), 'pass-counter-260101000000-ab12');
  });

  it('counts bytes, not characters', () => {
    assert.throws(() => bounded('reason', 'é'.repeat(513), FIELD_BYTES.reason), /reason: 1026 bytes is over the 1024-byte limit/);
    assert.doesNotThrow(() => bounded('reason', 'é'.repeat(512), FIELD_BYTES.reason));
  });

  it('a selector is bounded in entries, keys and values', () => {
    assert.throws(() => boundedMap('selector', Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v']))), /selector: 33 entries is over the limit of 32/);
    assert.throws(() => boundedMap('selector', { role: 'x'.repeat(300) }), /selector\["role"\]: 300 bytes is over the 256-byte limit/);
  });

  it('echo quotes at most ECHO_CHARS characters and says how long the input was', () => {
    assert.equal(echo('eth0'), '"eth0"');
    const e = echo(FOUR_MIB);
    assert.ok(e.length < ECHO_CHARS + 40, e);
    assert.match(e, /…" \(4194304 characters\)$/);
  });

  it('a request that does not parse reaches the handler as a marker, answered INVALID_ARGUMENT', () => {
    const service = tolerantService(ControlServiceService);
    const request = service.getRollout.requestDeserialize(Buffer.from([0x0a, 0x7f, 0x41]));
    const err = malformedRequest(request, 'GetRollout');
    assert.ok(err);
    assert.deepEqual([err.code, err.reason], ['INVALID_ARGUMENT', 'MALFORMED_REQUEST']);
    assert.equal(malformedRequest(service.getRollout.requestDeserialize(Buffer.from([0x0a, 0x01, 0x41])), 'GetRollout'), null);
  });

  it('an error on the wire is cut to its caps, keeping the end of its detail', () => {
    const wire = toServiceError(new BpfleetError('INVALID_ARGUMENT', 'INVALID_SPEC', FOUR_MIB, `${'d'.repeat(1 << 20)}THE END`));
    assert.equal(wire.code, status.INVALID_ARGUMENT);
    assert.ok(wire.details!.length <= WIRE_MESSAGE_CHARS + 40);
    const detail = wire.metadata!.get('bpfleet-detail-bin')[0] as Buffer;
    assert.equal(detail.length, WIRE_DETAIL_BYTES);
    assert.ok(detail.toString().endsWith('THE END'));
  });
});
