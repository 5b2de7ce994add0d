import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Server } from '@grpc/grpc-js';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as HEALTH_PROTO } from 'grpc-health-check';

const PROTO_ROOT = fileURLToPath(new URL('../proto', import.meta.url));
const BPFLEET_PROTOS = ['agent', 'control', 'module', 'rollout', 'telemetry'].map((f) => `bpfleet/v1/${f}.proto`);
// health.proto lives at <root>/health/v1/health.proto and is imported by that path.
const HEALTH_ROOT = dirname(dirname(dirname(HEALTH_PROTO)));

export const HEALTH_SERVICE = 'grpc.health.v1.Health';

let definition: PackageDefinition | null = null;

/**
 * The same .proto files ts-proto generates from, loaded with proto-loader: the reflection
 * service needs their descriptors, which the generated code does not carry.
 */
function packageDefinition(): PackageDefinition {
  definition ??= loadSync([...BPFLEET_PROTOS, 'health/v1/health.proto'], { includeDirs: [PROTO_ROOT, HEALTH_ROOT] });
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
