import type { Etcd3 } from 'etcd3';
import type { ArtifactStore } from '../../common/artifacts.js';
import type { Logger } from '../../common/log.js';
import { tolerantService } from '../../common/grpc-malformed.js';
import { ControlServiceService, type ControlServiceServer } from '../../proto/gen/bpfleet/v1/control.js';
import type { SignaturePolicy } from '../../common/signing.js';
import type { AuditLog } from '../store/audit.js';
import type { HostDirectory } from '../../common/etcd/hosts.js';
import type { ModuleRegistry } from '../../common/etcd/modules.js';
import { DesiredStore } from '../store/desired.js';
import { RequestStore } from '../store/requests.js';
import type { RolloutStore } from '../store/rollouts.js';
import { DrainStore } from '../store/drains.js';
import { RetiredVersions } from '../store/retired.js';
import { hostHandlers } from './hosts.js';
import { moduleHandlers } from './modules.js';
import { rolloutHandlers } from './rollouts.js';
import { rolloutVerbs } from './verbs.js';

export interface ApiDeps {
  etcd: Etcd3;
  artifacts: ArtifactStore;
  modules: ModuleRegistry;
  rollouts: RolloutStore;
  hosts: HostDirectory;
  audit: AuditLog;
  log: Logger;
  clock?: () => Date;
  /** The fleet-wide signature policy (control plane --require-signatures / --trusted-keys). */
  signatures?: SignaturePolicy;
  /** Operators' requests on rollouts; by default kept in `etcd`. */
  requests?: RequestStore;
  /** The fleet's desired versions (ListHosts flags hosts behind them); by default kept in `etcd`. */
  desired?: DesiredStore;
}

/** The ControlService definition to serve: a request that does not parse is INVALID_ARGUMENT, not INTERNAL. */
export const controlServiceDefinition = tolerantService(ControlServiceService);

/**
 * The whole ControlService, for server.addService(controlServiceDefinition, ...). Every
 * replica serves it. The API stores new rollouts (spec and an empty status), operators'
 * requests and the audit log; from then on only the leading controller writes a
 * rollout's status.
 */
export function controlService(deps: ApiDeps): ControlServiceServer {
  const all = {
    ...deps, clock: deps.clock ?? (() => new Date()), requests: deps.requests ?? new RequestStore(deps.etcd),
    drains: new DrainStore(deps.etcd), retired: new RetiredVersions(deps.etcd),
    desired: deps.desired ?? new DesiredStore(deps.etcd, deps.log),
  };
  return { ...moduleHandlers(all), ...rolloutHandlers(all), ...rolloutVerbs(all), ...hostHandlers(all) };
}
