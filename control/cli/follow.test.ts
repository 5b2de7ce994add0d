import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { BpfleetError } from '../../common/errors.js';
import { RolloutPhase, type Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import { emptyStatus } from '../rollout/vocabulary.js';
import type { Control } from './client.js';
import { follow, MAX_FAILURES_IN_A_ROW } from './follow.js';

const P = RolloutPhase;
const at = (phase: RolloutPhase, step = 0): Rollout =>
  ({ id: 'r', spec: undefined, status: { ...emptyStatus(), phase, step }, createdAt: '', createdBy: '', undoOf: '' });

type Script = (stream: EventEmitter) => void;

/** A Control whose watch streams play `scripts` in turn, one per watch, over `replicas`. */
function fakeControl(replicas: string[], scripts: Script[]) {
  let current = 0;
  const watchedOn: string[] = [];
  const ctl = {
    get replicas() {
      return replicas.length;
    },
    get address() {
      return replicas[current]!;
    },
    failover() {
      current = (current + 1) % replicas.length;
    },
    watch() {
      watchedOn.push(replicas[current]!);
      const stream = Object.assign(new EventEmitter(), { cancel: () => undefined });
      const script = scripts.shift();
      setImmediate(() => script?.(stream));
      return stream;
    },
  };
  return { ctl: ctl as unknown as Control, watchedOn };
}

const grpcError = (code: number, details: string) => Object.assign(new Error(details), { code, details });

describe('follow', () => {
  it('follows on the next replica when the stream breaks, and stops once `until` holds', async () => {
    const { ctl, watchedOn } = fakeControl(['a:1', 'b:1'], [
      (s) => {
        s.emit('data', at(P.ROLLOUT_PHASE_PROGRESSING, 0));
        s.emit('error', grpcError(status.UNAVAILABLE, 'connection reset'));
      },
      (s) => {
        s.emit('data', at(P.ROLLOUT_PHASE_PROGRESSING, 1));
        s.emit('data', at(P.ROLLOUT_PHASE_SUCCEEDED, 2));
      },
    ]);
    const seen: number[] = [];
    const reconnects: string[] = [];
    const res = await follow(ctl, 'r', {
      timeoutMs: 10_000,
      until: (r) => r.status!.phase === P.ROLLOUT_PHASE_SUCCEEDED,
      onUpdate: (r) => seen.push(r.status!.step),
      onReconnect: (err, next) => reconnects.push(`${err.code}→${next}`),
    });
    assert.equal(res.how, 'until');
    assert.equal(res.last!.status!.phase, P.ROLLOUT_PHASE_SUCCEEDED);
    assert.deepEqual(seen, [0, 1, 2]);
    assert.deepEqual(watchedOn, ['a:1', 'b:1']);
    assert.deepEqual(reconnects, ['UNAVAILABLE→b:1']);
  });

  it('gives up when no replica answers for many tries in a row after having followed', async () => {
    const unavailable: Script = (s) => s.emit('error', grpcError(status.UNAVAILABLE, 'connection refused'));
    const { ctl, watchedOn } = fakeControl(['a:1', 'b:1'], [
      (s) => {
        s.emit('data', at(P.ROLLOUT_PHASE_PROGRESSING, 0));
        s.emit('error', grpcError(status.UNAVAILABLE, 'connection reset'));
      },
      ...Array.from({ length: MAX_FAILURES_IN_A_ROW + 5 }, () => unavailable),
    ]);
    const pauses: number[] = [];
    await assert.rejects(
      follow(ctl, 'r', { timeoutMs: 0, until: () => false, onUpdate: () => undefined, sleep: async (ms) => void pauses.push(ms) }),
      (err: unknown) => err instanceof BpfleetError && err.code === 'UNAVAILABLE',
    );
    assert.equal(watchedOn.length, MAX_FAILURES_IN_A_ROW, 'one watch that saw data, then failures up to the limit');
    assert.equal(pauses.at(-1), 2000, 'backing off to the longest pause');
  });

  it('reports the end of the stream (the server ends it at a final phase)', async () => {
    const { ctl } = fakeControl(['a:1'], [(s) => {
      s.emit('data', at(P.ROLLOUT_PHASE_ROLLED_BACK));
      s.emit('end');
    }]);
    const res = await follow(ctl, 'r', { timeoutMs: 0, until: () => false, onUpdate: () => undefined });
    assert.deepEqual([res.how, res.last!.status!.phase], ['ended', P.ROLLOUT_PHASE_ROLLED_BACK]);
  });

  it('does not retry what another replica would refuse too', async () => {
    const { ctl, watchedOn } = fakeControl(['a:1', 'b:1'], [(s) => s.emit('error', grpcError(status.NOT_FOUND, 'rollout r not found'))]);
    await assert.rejects(follow(ctl, 'r', { timeoutMs: 5000, until: () => false, onUpdate: () => undefined }),
      (err: unknown) => err instanceof BpfleetError && err.code === 'NOT_FOUND');
    assert.deepEqual(watchedOn, ['a:1']);
  });

  it('gives up with the error when no listed replica was ever reached', async () => {
    const unreachable: Script = (s) => s.emit('error', grpcError(status.UNAVAILABLE, 'connection refused'));
    const { ctl, watchedOn } = fakeControl(['a:1', 'b:1'], [unreachable, unreachable, unreachable]);
    await assert.rejects(follow(ctl, 'r', { timeoutMs: 60_000, until: () => false, onUpdate: () => undefined }),
      (err: unknown) => err instanceof BpfleetError && err.code === 'UNAVAILABLE');
    assert.deepEqual(watchedOn, ['a:1', 'b:1']);
  });

  it('times out while nothing settles', async () => {
    const { ctl } = fakeControl(['a:1'], [(s) => s.emit('data', at(P.ROLLOUT_PHASE_PROGRESSING))]);
    const started = Date.now();
    const res = await follow(ctl, 'r', { timeoutMs: 200, until: () => false, onUpdate: () => undefined });
    assert.equal(res.how, 'timeout');
    assert.equal(res.last!.status!.phase, P.ROLLOUT_PHASE_PROGRESSING);
    assert.ok(Date.now() - started >= 190);
  });
});
