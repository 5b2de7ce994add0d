/** Where a process spent its CPU: a V8 .cpuprofile (node --cpu-prof) summed by area and function. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO } from '../../dev/fleet.js';

const ROOT = pathToFileURL(REPO).href;

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  /** µs on the monotonic clock process.hrtime reads. */
  startTime: number;
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  /** Sampled time, idle excluded, in ms. */
  busyMs: number;
  /**
   * Time by area of the code, in ms, largest first. Time in node's runtime and builtins
   * (JSON, Buffer, sockets, promises) goes to the nearest caller in a known area, so
   * JSON.stringify inside a store counts for the store.
   */
  areas: Record<string, number>;
  /** The functions with the most self time. */
  top: { fn: string; where: string; ms: number }[];
}

// First match wins: the part of bpfleet or the library a function belongs to.
const AREAS: [RegExp, string][] = [
  [/node_modules\/@grpc\//, 'grpc-js (Apply calls and the etcd client\'s transport)'],
  [/node_modules\/(etcd3|cockatiel|long|protobufjs)\//, 'etcd client'],
  [/node_modules\/@nats-io\//, 'nats client'],
  [/\/proto\/gen\/|node_modules\/@bufbuild\/protobuf\//, 'protobuf/JSON codecs (ts-proto)'],
  [/\/control\/rollout\//, 'reconcile (pure decision)'],
  [/\/control\/analysis\//, 'telemetry analysis'],
  [/\/control\/store\//, 'stores (etcd keys, batching)'],
  [/\/control\/controller\.ts/, 'controller loop'],
  [/node_modules\/pino|\/common\/log\.ts/, 'logging'],
  [/node_modules\/@opentelemetry|\/common\/(otel|spans|meters)/, 'opentelemetry'],
  [/node_modules\/(tsx|esbuild)\//, 'tsx loader'],
  [/\/control\//, 'control plane, other'],
];

const RUNTIME = 'node runtime and builtins, no known caller';

function ownArea(node: ProfileNode): string | null {
  const { functionName, url } = node.callFrame;
  if (functionName === '(garbage collector)') return 'garbage collection';
  if (functionName === '(program)') return 'V8/native, unattributed';
  for (const [re, area] of AREAS) if (re.test(url)) return area;
  return /^node:|^$/.test(url) ? null : 'other';
}

function areaOf(node: ProfileNode, parentOf: Map<number, ProfileNode>): string {
  for (let n: ProfileNode | undefined = node; n; n = parentOf.get(n.id)) {
    const area = ownArea(n);
    if (area) return area;
  }
  return RUNTIME;
}

/** A stretch of the monotonic clock (process.hrtime.bigint() / 1000), in µs. */
export interface ProfileWindow {
  fromUs: number;
  toUs: number;
}

/**
 * Summarises the busiest .cpuprofile in `dir` (with tsx, the module loader's thread writes
 * a profile of its own next to the main thread's), counting only samples inside `window`
 * when given: V8 stamps samples with the same monotonic clock every process on the machine
 * reads, so the benchmark can say "while the rollout ran".
 */
export function summariseProfile(dir: string, window?: ProfileWindow, topN = 25): ProfileSummary {
  const summaries = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => summarise(JSON.parse(readFileSync(join(dir, f), 'utf8')) as CpuProfile, window, topN));
  if (!summaries.length) throw new Error(`no .cpuprofile in ${dir}`);
  return summaries.sort((a, b) => b.busyMs - a.busyMs)[0]!;
}

function summarise(profile: CpuProfile, window: ProfileWindow | undefined, topN: number): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parentOf = new Map<number, ProfileNode>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n);
  const selfUs = new Map<number, number>();
  let at = profile.startTime;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (window && (at < window.fromUs || at > window.toUs)) return;
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  });
  const areas = new Map<string, number>();
  const fns = new Map<string, { fn: string; where: string; us: number }>();
  let busyUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!;
    if (node.callFrame.functionName === '(idle)') continue;
    busyUs += us;
    const area = areaOf(node, parentOf);
    areas.set(area, (areas.get(area) ?? 0) + us);
    const { url } = node.callFrame;
    const where = `${url.startsWith(ROOT) ? url.slice(ROOT.length) : url}:${node.callFrame.lineNumber + 1}`;
    const key = `${node.callFrame.functionName}@${where}`;
    const f = fns.get(key) ?? { fn: node.callFrame.functionName || '(anonymous)', where, us: 0 };
    f.us += us;
    fns.set(key, f);
  }
  const ms = (us: number): number => Math.round(us / 100) / 10;
  return {
    busyMs: ms(busyUs),
    areas: Object.fromEntries([...areas].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, ms(v)])),
    top: [...fns.values()].sort((a, b) => b.us - a.us).slice(0, topN).map((f) => ({ fn: f.fn, where: f.where, ms: ms(f.us) })),
  };
}
