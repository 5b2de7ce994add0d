/**
 * One injector per fault kind of the chaos schedule (schedule.ts). Each injects its fault,
 * waits a little, undoes it where it can (restart, re-create), and says in one line what it
 * did. Nothing here reads the product's state to decide; targets come from the schedule's pick.
 */
import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { connect } from '@nats-io/transport-node';
import { keys, subjects } from '../../common/keys.js';
import { natsTls } from '../../common/store-clients.js';
import { HOST_IFACE } from '../../dev/netns.js';
import { run } from '../../dev/processes.js';
import { clientTls } from '../../dev/secure-stores.js';
import { ControlServiceClient } from '../../proto/gen/bpfleet/v1/control.js';
import type { ChaosFleet } from './chaos-fleet.js';
import type { FaultKind } from './schedule.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pickOf = <T>(list: readonly T[], pick: number): T => list[Math.floor(pick * list.length) % list.length]!;

/** What the runner needs to tell the attachment invariant about a deleted interface. */
export interface FaultContext {
  chaos: ChaosFleet;
  /** Called with the host whose interface is gone until the returned promise resolves. */
  interfaceDown(host: string, down: boolean): void;
}

export type Injector = (ctx: FaultContext, pick: number) => Promise<string>;

/** SIGKILL of one control-plane replica; a new replica takes its place (a new port, as a rescheduled pod would). */
const killControl: Injector = async ({ chaos }, pick) => {
  const live = chaos.replicas.filter((r) => r.process.running);
  const victim = pickOf(live, pick);
  await victim.process.kill();
  await sleep(1_000);
  const r = await chaos.addControlReplica();
  return `SIGKILL control replica ${victim.address}; new replica at ${r.address}`;
};

/** SIGKILL of one kernel host's agent, restarted 1-3 s later on the same pins. */
const killAgent: Injector = async ({ chaos }, pick) => {
  const h = pickOf(chaos.fleet.hosts, pick);
  await h.agent.kill();
  await sleep(1_000 + Math.floor(pick * 2_000));
  await chaos.fleet.startAgent(h.name);
  return `SIGKILL agent ${h.name}, restarted`;
};

/** SIGKILL of the sim pool process (every simulated host at once), restarted. */
const killSimPool: Injector = async ({ chaos }) => {
  if (!chaos.pool) return 'no sim pool';
  await chaos.pool.kill();
  await sleep(1_000);
  await chaos.startPool();
  return `SIGKILL sim pool (${chaos.opts.simHosts} hosts), restarted`;
};

const killEtcdMember: Injector = async ({ chaos }, pick) => {
  const m = pickOf(chaos.fleet.etcdCluster!.members, pick);
  await m.kill('SIGKILL');
  await sleep(2_000 + Math.floor(pick * 3_000));
  await m.restart();
  return `SIGKILL etcd member ${m.name}, restarted`;
};

const killNatsNode: Injector = async ({ chaos }, pick) => {
  const members = chaos.fleet.natsCluster!.members;
  const i = Math.floor(pick * members.length) % members.length;
  await members[i]!.kill('SIGKILL');
  await sleep(2_000 + Math.floor(pick * 3_000));
  await members[i]!.restart();
  return `SIGKILL nats node ${i}, restarted`;
};

/**
 * Deletes a kernel host's eth0 (the veth pair goes with it) and re-creates it 2-5 s later
 * with the same names, addresses and static neighbours (as dev/netns.ts creates it).
 */
const deleteInterface: Injector = async ({ chaos, interfaceDown }, pick) => {
  const h = pickOf(chaos.fleet.hosts, pick);
  const { netns, peerIface, hostAddr, peerAddr, prefixLen } = h.netns;
  interfaceDown(h.name, true);
  try {
    await run('ip', ['-n', netns, 'link', 'del', 'dev', HOST_IFACE]);
    await sleep(2_000 + Math.floor(pick * 3_000));
    await run('ip', ['link', 'add', peerIface, 'type', 'veth', 'peer', 'name', HOST_IFACE, 'netns', netns]);
    await run('ip', ['addr', 'add', `${peerAddr}/${prefixLen}`, 'dev', peerIface]);
    await run('ip', ['-n', netns, 'addr', 'add', `${hostAddr}/${prefixLen}`, 'dev', HOST_IFACE]);
    await run('ip', ['-n', netns, 'link', 'set', 'dev', HOST_IFACE, 'up']);
    await run('ip', ['link', 'set', 'dev', peerIface, 'up']);
    const mac = async (args: string[]) => (JSON.parse((await run('ip', ['-j', ...args])).stdout) as { address: string }[])[0]!.address;
    const [hostMac, peerMac] = await Promise.all([mac(['-n', netns, 'link', 'show', 'dev', HOST_IFACE]), mac(['link', 'show', 'dev', peerIface])]);
    await run('ip', ['neigh', 'replace', hostAddr, 'lladdr', hostMac, 'dev', peerIface, 'nud', 'permanent']);
    await run('ip', ['-n', netns, 'neigh', 'replace', peerAddr, 'lladdr', peerMac, 'dev', HOST_IFACE, 'nud', 'permanent']);
  } finally {
    interfaceDown(h.name, false);
  }
  return `deleted and re-created ${h.name}'s ${HOST_IFACE}`;
};

/** Compacts etcd's history up to the current revision (cancels every watch that starts earlier). */
const compactEtcd: Injector = async ({ chaos }) => {
  const etcd = chaos.fleet.etcdClient();
  try {
    const { header } = await etcd.get(keys.hostsPrefix).exec();
    await etcd.kv.compact({ revision: header.revision, physical: true });
    return `compacted etcd at revision ${header.revision}`;
  } finally {
    etcd.close();
  }
};

/** Garbage under every prefix a daemon reads, then removed again after a few seconds. */
const malformedEtcd: Injector = async ({ chaos }, pick) => {
  const etcd = chaos.fleet.etcdClient();
  const tag = `chaos${Math.floor(pick * 1e6)}`;
  const junk = ['not json', '{"name": 42', '[]', '{"phase": "ROLLOUT_PHASE_BOGUS"}', '\u0000\u00ff'];
  const written = [
    keys.host(`zz-${tag}`), keys.observed(`zz-${tag}`), `${keys.intentsPrefix}zz-${tag}/xdp:eth0`, keys.rollout(`zz-${tag}`),
    `${keys.requestsPrefix}zz-${tag}`, keys.module('zz-chaos', tag),
  ];
  try {
    for (const [i, key] of written.entries()) await etcd.put(key).value(junk[i % junk.length]!);
    await sleep(3_000);
    for (const key of written) await etcd.delete().key(key);
    return `wrote ${written.length} malformed keys (hosts, observed, intents, rollouts, requests, modules), removed after 3 s`;
  } finally {
    etcd.close();
  }
};

/** Telemetry that does not parse, and a report on one host's subject naming another, published as the control plane. */
const malformedReport: Injector = async ({ chaos }, pick) => {
  const { fleet } = chaos;
  const nc = await connect({ servers: fleet.natsServers.split(','), tls: natsTls(clientTls(fleet.pki!, fleet.pki!.control)) });
  try {
    const h = pickOf(fleet.hosts, pick);
    for (let i = 0; i < 50; i++) nc.publish(subjects.telemetry(h.name), new Uint8Array([0xff, 0x01, 0x02, i]));
    nc.publish(subjects.telemetry(h.name), new TextEncoder().encode('{"host":"someone-else"}'));
    await nc.flush();
    return `published 51 malformed telemetry reports on ${subjects.telemetry(h.name)}`;
  } finally {
    await nc.close();
  }
};

/** 20 concurrent calls with a 1 MiB rollout id to every live replica, then one ordinary call must still answer. */
const oversizeBurst: Injector = async ({ chaos }) => {
  const creds = chaos.fleet.credentials('viewer');
  const codes = new Map<number, number>();
  for (const r of chaos.replicas.filter((x) => x.process.running)) {
    const api = new ControlServiceClient(r.address, creds, { 'grpc.max_send_message_length': 8 << 20 });
    try {
      const id = 'x'.repeat(1 << 20);
      await Promise.all(Array.from({ length: 20 }, () => new Promise<void>((resolve) => {
        api.getRollout({ id }, new Metadata(), { deadline: Date.now() + 10_000 }, (err: ServiceError | null) => {
          codes.set(err?.code ?? 0, (codes.get(err?.code ?? 0) ?? 0) + 1);
          resolve();
        });
      })));
    } finally {
      api.close();
    }
  }
  return `oversize burst: gRPC codes ${JSON.stringify(Object.fromEntries(codes))}`;
};

export const INJECTORS: Record<FaultKind, Injector> = {
  'kill-control': killControl,
  'kill-agent': killAgent,
  'kill-sim-pool': killSimPool,
  'kill-etcd-member': killEtcdMember,
  'kill-nats-node': killNatsNode,
  'delete-interface': deleteInterface,
  'etcd-compaction': compactEtcd,
  'malformed-etcd': malformedEtcd,
  'malformed-report': malformedReport,
  'oversize-burst': oversizeBurst,
};
