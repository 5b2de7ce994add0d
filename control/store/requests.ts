import type { Etcd3 } from 'etcd3';
import { BpfleetError } from '../../common/errors.js';
import { keys } from '../../common/keys.js';
import { codecs } from '../../common/etcd/codec.js';
import { decodeOrSkip } from '../../common/etcd/malformed.js';
import type { RolloutRequest } from '../../proto/gen/bpfleet/v1/rollout.js';

// Verbs are typed by people; a rollout that collected this many has a script gone wrong.
const MAX_REQUESTS = 1000;
const APPEND_ATTEMPTS = 5;

/**
 * Operators' requests on a rollout, kept apart from the rollout's record: the API appends
 * here and never writes a status, the controller reads here and never writes a request,
 * so neither can overwrite what the other decided.
 */
export class RequestStore {
  constructor(private readonly etcd: Etcd3) {}

  /** The rollout's requests in order; none when the value does not decode (reported as malformed). */
  async list(rolloutId: string): Promise<RolloutRequest[]> {
    const key = keys.requests(rolloutId);
    const text = await this.etcd.get(key).string();
    return (text === null ? null : decodeOrSkip(key, text, codecs.requests.decode))?.requests ?? [];
  }

  /**
   * Appends a request with the next sequence number. `admit` sees the requests already
   * recorded and may refuse by throwing; the append is a compare-and-swap on the key, so
   * two concurrent callers get distinct numbers and each was admitted against the other.
   */
  async append(rolloutId: string, draft: Omit<RolloutRequest, 'seq'>, admit: (recorded: RolloutRequest[]) => boolean): Promise<RolloutRequest | null> {
    const key = keys.requests(rolloutId);
    for (let attempt = 0; attempt < APPEND_ATTEMPTS; attempt++) {
      const kv = (await this.etcd.get(key).exec()).kvs[0];
      // A malformed list counts as empty and is overwritten by this append.
      const recorded = (kv ? decodeOrSkip(key, kv.value.toString(), codecs.requests.decode) : null)?.requests ?? [];
      if (!admit(recorded)) return null;
      if (recorded.length >= MAX_REQUESTS) {
        throw new BpfleetError('FAILED_PRECONDITION', 'TOO_MANY_REQUESTS', `rollout ${rolloutId} already has ${recorded.length} requests`);
      }
      const request: RolloutRequest = { ...draft, seq: (recorded.at(-1)?.seq ?? 0) + 1 };
      const txn = await this.etcd
        .if(key, 'Mod', '==', kv ? Number(kv.mod_revision) : 0)
        .then(this.etcd.put(key).value(codecs.requests.encode({ rolloutId, requests: [...recorded, request] })))
        .commit();
      if (txn.succeeded) return request;
    }
    throw new BpfleetError('ABORTED', 'CONTENDED', `rollout ${rolloutId}: requests changed ${APPEND_ATTEMPTS} times while recording one; try again`);
  }
}
