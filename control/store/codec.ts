/**
 * etcd values are the proto messages' canonical JSON, so `etcdctl get` shows something a
 * person can read and every value has exactly one schema: the .proto file.
 */
export interface JsonCodec<T> {
  toJSON(message: T): unknown;
  fromJSON(object: any): T;
}

export function encode<T>(codec: JsonCodec<T>, message: T): string {
  return JSON.stringify(codec.toJSON(message));
}

export function decode<T>(codec: JsonCodec<T>, text: string): T {
  return codec.fromJSON(JSON.parse(text));
}
