import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { Metadata, status, type ServerUnaryCall, type ServerWritableStream, type ServiceError } from '@grpc/grpc-js';
import { GRPCDeadlineExceededError, GRPCUnavailableError } from 'etcd3';
import { BpfleetError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { CONTROL_ACCESS, failStream, serverStream, unary } from './handler.js';

/** A logger that keeps what unary() logs at error level. */
function recordingLog() {
  const errors: { rpc: string; err: unknown }[] = [];
  const log = { error: (fields: { rpc: string; err: unknown }) => errors.push(fields) } as unknown as Logger;
  return { log, errors };
}

function unaryCall(actor?: string): ServerUnaryCall<object, string> {
  const metadata = new Metadata();
  if (actor) metadata.set('bpfleet-actor', actor);
  return { metadata, request: {} } as unknown as ServerUnaryCall<object, string>;
}

/** What the client of a unary handler built from `fn` gets back. */
function answer(log: Logger, fn: () => Promise<string>): Promise<{ err: Partial<ServiceError> | null; res?: string }> {
  return new Promise((resolve) => {
    unary<object, string>(log, 'GetRollout', fn)(unaryCall(), (err, res) => resolve({ err: err as Partial<ServiceError> | null, res: res ?? undefined }));
  });
}

const reasonOf = (err: Partial<ServiceError> | null) => err?.metadata?.get('bpfleet-reason')[0];

describe('unary: the one error mapping', () => {
  it('answers with the handler result', async () => {
    const { log, errors } = recordingLog();
    assert.deepEqual(await answer(log, async () => 'ok'), { err: null, res: 'ok' });
    assert.deepEqual(errors, []);
  });

  it('sends a BpfleetError with its code, message and reason, and does not log it', async () => {
    const { log, errors } = recordingLog();
    const { err } = await answer(log, () => Promise.reject(new BpfleetError('NOT_FOUND', 'ROLLOUT_NOT_FOUND', 'rollout r-1 not found')));
    assert.equal(err?.code, status.NOT_FOUND);
    assert.equal(err?.details, 'rollout r-1 not found');
    assert.equal(reasonOf(err), 'ROLLOUT_NOT_FOUND');
    assert.deepEqual(errors, []);
  });

  for (const [what, thrown] of [
    ['unavailable', new GRPCUnavailableError('connect ECONNREFUSED')],
    ['past its deadline', new GRPCDeadlineExceededError('deadline exceeded')],
    ['behind an open circuit breaker', Object.assign(new Error('breaker is open'), { isBrokenCircuitError: true })],
  ] as const) {
    it(`maps etcd ${what} to UNAVAILABLE/STORE_UNAVAILABLE, not logged`, async () => {
      const { log, errors } = recordingLog();
      const { err } = await answer(log, () => Promise.reject(thrown));
      assert.equal(err?.code, status.UNAVAILABLE);
      assert.equal(reasonOf(err), 'STORE_UNAVAILABLE');
      assert.equal(err?.details, `etcd is unreachable: ${thrown.message}`);
      assert.deepEqual(errors, []);
    });
  }

  it('sends anything else as INTERNAL and logs it with the RPC name', async () => {
    const { log, errors } = recordingLog();
    const bug = new TypeError('x is undefined');
    const { err } = await answer(log, () => Promise.reject(bug));
    assert.equal(err?.code, status.INTERNAL);
    assert.equal(reasonOf(err), 'INTERNAL');
    assert.equal(err?.details, 'x is undefined');
    assert.deepEqual(errors, [{ err: bug, rpc: 'GetRollout' }]);
  });

  it('logs a BpfleetError of code INTERNAL too', async () => {
    const { log, errors } = recordingLog();
    await answer(log, () => Promise.reject(new BpfleetError('INTERNAL', 'INTERNAL', 'cannot decode')));
    assert.equal(errors.length, 1);
  });
});

/** A server stream that keeps the status it is failed with. */
function streamCall(cancelled = false) {
  const call = Object.assign(new EventEmitter(), { metadata: new Metadata(), request: {}, cancelled });
  const failed = new Promise<Partial<ServiceError>>((resolve) => call.on('error', resolve));
  return { call: call as unknown as ServerWritableStream<object, string>, failed };
}

describe('server streams', () => {
  it('failStream ends the stream with the mapped status', async () => {
    const { call, failed } = streamCall();
    failStream(call, new GRPCUnavailableError('gone'));
    const err = await failed;
    assert.equal(err.code, status.UNAVAILABLE);
    assert.equal(reasonOf(err), 'STORE_UNAVAILABLE');
  });

  it('serverStream fails the stream when the handler throws', async () => {
    const { call, failed } = streamCall();
    serverStream<object, string>('WatchRollout', () => Promise.reject(new BpfleetError('INVALID_ARGUMENT', 'MISSING_ID', 'a rollout id is required')))(call);
    const err = await failed;
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.equal(reasonOf(err), 'MISSING_ID');
  });

  it('serverStream sends nothing on a stream the client cancelled', async () => {
    const { call } = streamCall(true);
    let emitted = false;
    call.on('error', () => (emitted = true));
    let ran!: () => void;
    const done = new Promise<void>((resolve) => (ran = resolve));
    serverStream<object, string>('WatchRollout', async () => {
      ran();
      throw new Error('watch cancelled');
    })(call);
    await done;
    await new Promise((r) => setImmediate(r));
    assert.equal(emitted, false);
  });
});

describe('CONTROL_ACCESS', () => {
  it('names the role each method needs: reads for viewers, rollout and host verbs for operators, pushes and retires for publishers', () => {
    const byRole = (role: string) => Object.entries(CONTROL_ACCESS).filter(([, r]) => r.role === role).map(([m]) => m).sort();
    assert.deepEqual(byRole('viewer'), ['getRollout', 'getRolloutHistory', 'getRolloutHosts', 'listHosts', 'listModules', 'listRollouts', 'watchRollout']);
    assert.deepEqual(byRole('operator'), ['abortRollout', 'createRollout', 'decommissionHost', 'drainHost', 'pauseRollout', 'promoteRollout', 'resumeRollout', 'undoRollout', 'undrainHost']);
    assert.deepEqual(byRole('publisher'), ['pushModule', 'retireModule']);
    assert.ok(Object.values(CONTROL_ACCESS).every((r) => !r.control), 'the control plane has no business calling its own API');
  });
});
