import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { BpfleetError, toServiceError } from '../../common/errors.js';
import { ControlServiceService, type CreateRolloutRequest, type GetRolloutRequest } from '../../proto/gen/bpfleet/v1/control.js';
import { RolloutSpec, type Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import { Control } from './client.js';

const rolloutOf = (id: string, createdBy: string): Rollout => ({ id, spec: undefined, status: undefined, createdAt: '', createdBy, undoOf: '' });

describe('Control.call', () => {
  const server = new Server();
  let address = '';

  before(async () => {
    server.addService(ControlServiceService, {
      createRollout: (call: ServerUnaryCall<CreateRolloutRequest, Rollout>, cb: sendUnaryData<Rollout>) =>
        cb(null, rolloutOf(`${call.request.spec?.module}-1`, String(call.metadata.get('bpfleet-actor')[0]))),
      getRollout: (call: ServerUnaryCall<GetRolloutRequest, Rollout>, cb: sendUnaryData<Rollout>) =>
        cb(toServiceError(new BpfleetError('NOT_FOUND', 'ROLLOUT_NOT_FOUND', `rollout ${call.request.id} not found`)) as never, null),
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    address = `127.0.0.1:${port}`;
  });
  after(() => server.forceShutdown());

  it('sends the method\'s request and resolves with its response, naming the actor', async () => {
    process.env.BPFLEET_ACTOR = 'alice@ci';
    const ctl = new Control(address, { mode: 'insecure' });
    try {
      const created: Rollout = await ctl.call('createRollout', { spec: RolloutSpec.fromPartial({ module: 'pass-counter' }) });
      assert.deepEqual([created.id, created.createdBy], ['pass-counter-1', 'alice@ci']);
    } finally {
      ctl.close();
      delete process.env.BPFLEET_ACTOR;
    }
  });

  it('rejects with the BpfleetError the server sent', async () => {
    const ctl = new Control(address, { mode: 'insecure' });
    try {
      await assert.rejects(ctl.call('getRollout', { id: 'r-9' }), (err: BpfleetError) =>
        err instanceof BpfleetError && err.code === 'NOT_FOUND' && err.reason === 'ROLLOUT_NOT_FOUND' && err.message === 'rollout r-9 not found');
    } finally {
      ctl.close();
    }
  });

  it('moves on to the next replica when one is unreachable', async () => {
    const ctl = new Control(`127.0.0.1:1,${address}`, { mode: 'insecure' });
    try {
      assert.equal((await ctl.call('createRollout', { spec: RolloutSpec.fromPartial({ module: 'm' }) })).id, 'm-1');
      assert.equal(ctl.address, address);
    } finally {
      ctl.close();
    }
  });

  it('takes only unary methods, each with its own request type (checked by tsc)', () => {
    const typeChecks = (ctl: Control) => {
      // @ts-expect-error WatchRollout streams: it is followed with watch(), not call().
      void ctl.call('watchRollout', { id: 'r' });
      // @ts-expect-error GetRollout takes an id, not a module.
      void ctl.call('getRollout', { module: 'm' });
      // @ts-expect-error CreateRollout answers a Rollout, not a list.
      void ctl.call('createRollout', { spec: undefined }).then((r) => r.rollouts);
    };
    assert.equal(typeof typeChecks, 'function');
  });
});
