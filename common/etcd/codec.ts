import { GetStateResponse, Intent } from '../../proto/gen/bpfleet/v1/agent.js';
import { Host, HostDrain } from '../../proto/gen/bpfleet/v1/control.js';
import { Module } from '../../proto/gen/bpfleet/v1/module.js';
import { DesiredVersion, HostProgress, Rollout, RolloutRequests } from '../../proto/gen/bpfleet/v1/rollout.js';
import { malformed } from './malformed.js';

/** How one type of stored value becomes an etcd value and back. */
export interface Codec<T> {
  encode(value: T): string;
  /**
   * Throws a MALFORMED_VALUE BpfleetError (common/etcd/malformed.ts) when the text is not a
   * JSON object or lacks a field every stored value of the type has.
   */
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
function protoJson<T>(type: string, message: ProtoJson<T>, required: (value: T) => unknown): Codec<T> {
  return {
    encode: (value) => JSON.stringify(message.toJSON(value)),
    decode: (text) => {
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch (err) {
        throw malformed(`not a ${type}: not JSON (${(err as Error).message})`);
      }
      // fromJSON takes anything and fills what is missing with defaults: `[]`, `42` or `{}`
      // would decode to an empty message that readers would act on.
      if (typeof json !== 'object' || json === null || Array.isArray(json)) throw malformed(`not a ${type}: not a JSON object`);
      let value: T;
      try {
        value = message.fromJSON(json);
      } catch (err) {
        throw malformed(`not a ${type}: ${(err as Error).message}`);
      }
      if (!required(value)) throw malformed(`not a ${type}: its identifying fields are missing`);
      return value;
    },
  };
}

/**
 * The codec of every proto value bpfleet stores, named like the key it is stored under
 * (common/keys.ts). Two values are not proto messages: audit entries are plain JSON
 * (control/store/audit.ts) and the active-rollout slot holds a bare rollout id.
 */
export const codecs = {
  host: protoJson('host registration', Host, (h) => h.name),
  observed: protoJson('reported state', GetStateResponse, (s) => s.host),
  intent: protoJson('intent', Intent, (i) => i.attachment),
  drain: protoJson('host drain', HostDrain, (d) => d.host),
  module: protoJson('module', Module, (m) => m.manifest?.name && m.manifest.version && m.digest),
  rollout: protoJson('rollout', Rollout, (r) => r.id && r.spec?.module && r.spec.attachment),
  rolloutHost: protoJson('host progress', HostProgress, (h) => h.host),
  requests: protoJson('request list', RolloutRequests, (r) => r.rolloutId),
  desired: protoJson('desired version', DesiredVersion, (d) => d.module && d.version && d.digest && d.attachment),
};
