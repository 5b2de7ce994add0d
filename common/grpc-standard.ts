import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import type { Server } from '@grpc/grpc-js';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as HEALTH_PROTO } from 'grpc-health-check';

/** `buf build --as-file-descriptor-set` of proto/ (npm run gen:proto; proto/gen.test.ts checks it is fresh). */
export const DESCRIPTOR_SET = fileURLToPath(new URL('../proto/descriptors.binpb', import.meta.url));
// health.proto lives at <root>/health/v1/health.proto and is imported by that path.
const HEALTH_ROOT = dirname(dirname(dirname(HEALTH_PROTO)));

export const HEALTH_SERVICE = 'grpc.health.v1.Health';

let definition: PackageDefinition | null = null;

/** The serialized FileDescriptorProtos in a FileDescriptorSet (its only field: repeated `file` = 1). */
export function fileDescriptorProtos(set: Uint8Array): Buffer[] {
  const reader = new BinaryReader(set);
  const files: Buffer[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) files.push(Buffer.from(reader.bytes()));
    else reader.skip(wireType, field);
  }
  return files;
}

/**
 * What the reflection service serves. The bpfleet files come from buf, as protoc would build
 * them: proto-loader's own descriptors (protobufjs) name a map field's entry message after
 * the field ("Labels", not "LabelsEntry"), which protoc and Python's protobuf reject ("map_entry
 * should not be set explicitly"). health.proto (no maps) comes from proto-loader.
 */
function packageDefinition(): PackageDefinition {
  if (definition) return definition;
  // The reflection service reads only `fileDescriptorProtos` from each entry; no other
  // PackageDefinition entry shape carries files without also carrying a message's codec.
  const bpfleet = { fileDescriptorProtos: fileDescriptorProtos(readFileSync(DESCRIPTOR_SET)) } as unknown as PackageDefinition[string];
  definition = { ...loadSync('health/v1/health.proto', { includeDirs: [HEALTH_ROOT] }), 'bpfleet.v1': bpfleet };
  return definition;
}

export interface StandardServices {
  /** Reports every listed service (and the server as a whole, "") as NOT_SERVING: call before shutdown. */
  drain(): void;
}

/**
 * Adds the standard gRPC server reflection (so grpcurl and friends can list and call the
 * API without the .proto files) and the standard health service (grpc.health.v1, for
 * load balancers, Kubernetes probes and `grpc_health_probe`) to `server`.
 */
export function addStandardServices(server: Server, services: readonly string[]): StandardServices {
  new ReflectionService(packageDefinition(), { services: [...services, HEALTH_SERVICE] }).addToServer(server);
  const names = ['', ...services];
  const health = new HealthImplementation(Object.fromEntries(names.map((n) => [n, 'SERVING'])));
  health.addToServer(server);
  return { drain: () => names.forEach((n) => health.setStatus(n, 'NOT_SERVING')) };
}
