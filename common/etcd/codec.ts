import { GetStateResponse, Intent } from '../../proto/gen/bpfleet/v1/agent.js';
import { Host } from '../../proto/gen/bpfleet/v1/control.js';
import { Module } from '../../proto/gen/bpfleet/v1/module.js';
import { HostProgress, Rollout, RolloutRequests } from '../../proto/gen/bpfleet/v1/rollout.js';

/** How one type of stored value becomes an etcd value and back. */
export interface Codec<T> {
  encode(value: T): string;
  /** Throws when the text is not JSON. */
  decode(text: string): T;
}

/** The generated helpers of a proto message (ts-proto's toJSON/fromJSON). */
interface ProtoJson<T> {
  toJSON(message: T): unknown;
  fromJSON(object: any): T;
}

/**
 * etcd values are the proto messages' canonical JSON, so `etcdctl get` shows something a
 * person can read and every value has exactly one schema: the .proto file.
 */
function protoJson<T>(message: ProtoJson<T>): Codec<T> {
  return {
    encode: (value) => JSON.stringify(message.toJSON(value)),
    decode: (text) => message.fromJSON(JSON.parse(text)),
  };
}

/**
 * The codec of every proto value bpfleet stores, named like the key it is stored under
 * (common/keys.ts). Two values are not proto messages: audit entries are plain JSON
 * (control/store/audit.ts) and the active-rollout slot holds a bare rollout id.
 */
export const codecs = {
  host: protoJson(Host),
  observed: protoJson(GetStateResponse),
  intent: protoJson(Intent),
  module: protoJson(Module),
  rollout: protoJson(Rollout),
  rolloutHost: protoJson(HostProgress),
  requests: protoJson(RolloutRequests),
};
