import { readFileSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { formatAttachment, hookKind, hookName, HOOK_NAMES, type Attachment, type HookName } from '../../../common/attachment.js';
import { DIGEST_RE } from '../../../common/digest.js';
import { requireBpfElf } from '../../../common/elf.js';
import { BpfleetError } from '../../../common/errors.js';
import { childSpan } from '../../../common/spans.js';
import type { SwapCheckpoint } from '../../crash-hook.js';
import type { DataplaneDriver, InstallResult, ModuleArtifact, ProgramStats, RunningModule } from '../driver.js';
import { hookSupport } from './features.js';
import * as bpf from './libbpf.js';
import { NetnsSwitch } from './netns.js';
import { AttachmentPins, pinCard, pinnedAttachments, readCard, unpin, type ModuleCard } from './pins.js';

export interface KernelDriverOptions {
  /** bpffs directory this agent owns; agents sharing a host need one each. */
  pinRoot?: string;
  /** Network namespace of the interfaces: a name under /run/netns or a path. */
  netns?: string;
  /** Test hook, called at the points of a swap (see crash-hook.ts). */
  checkpoint?: SwapCheckpoint;
}

export const DEFAULT_PIN_ROOT = '/sys/fs/bpf/bpfleet';

/** Digest reported for a link running a program that no pin (of ours) accounts for. */
export const UNKNOWN_DIGEST = 'unknown';

const COUNTERS_MAP = 'bpfleet_counters';
const MAP_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
// Enough verifier log to see the failing instruction and the state that led to it.
const LOG_TAIL_LINES = 60;
const LOG_TAIL_BYTES = 8192;

interface Hook {
  /** Short name for error prefixes ("attach xdp link: ..."). */
  linkKind: 'xdp' | 'tcx';
  attachType: number;
  progType: number;
}

const HOOKS: Record<HookName, Hook> = {
  xdp: { linkKind: 'xdp', attachType: bpf.BPF_XDP, progType: bpf.BPF_PROG_TYPE_XDP },
  'tcx-ingress': { linkKind: 'tcx', attachType: bpf.BPF_TCX_INGRESS, progType: bpf.BPF_PROG_TYPE_SCHED_CLS },
  'tcx-egress': { linkKind: 'tcx', attachType: bpf.BPF_TCX_EGRESS, progType: bpf.BPF_PROG_TYPE_SCHED_CLS },
};

const PROG_TYPE_NAMES: Record<number, string> = {
  [bpf.BPF_PROG_TYPE_SCHED_CLS]: 'sched_cls',
  [bpf.BPF_PROG_TYPE_XDP]: 'xdp',
};

/** What one attachment's pins say, read back from the kernel. */
interface Inspection {
  /** The pinned link, live or not; null when there is no link pin. */
  link: bpf.LinkInfo | null;
  running: RunningModule | null;
  card: ModuleCard | null;
}

/**
 * The DataplaneDriver over the real kernel: libbpf loads, bpf_link attaches, and bpffs pins
 * under `pinRoot` are the only state, so a restarted agent (a new instance) adopts what runs.
 * See ARCHITECTURE.md, "Agent: how a swap must behave".
 */
export class KernelDriver implements DataplaneDriver {
  readonly kind = 'kernel' as const;
  readonly pinRoot: string;
  private readonly netns: NetnsSwitch | null;
  private readonly checkpoint: SwapCheckpoint;
  // Mutations run one at a time: install() awaits the verifier, and observe() must not
  // collect the pins of an install in flight as garbage.
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(opts: KernelDriverOptions = {}) {
    this.pinRoot = opts.pinRoot ?? DEFAULT_PIN_ROOT;
    this.netns = opts.netns ? openNetns(opts.netns) : null;
    this.checkpoint = opts.checkpoint ?? (() => undefined);
    enableRunTimeStats();
  }

  capabilities(): string[] {
    return HOOK_NAMES.filter((hook) => hookSupport(hook).supported);
  }

  observe(): Promise<RunningModule[]> {
    return this.exclusive('observe', () => {
      const found: RunningModule[] = [];
      for (const attachment of pinnedAttachments(this.pinRoot)) {
        const pins = new AttachmentPins(this.pinRoot, attachment);
        const state = this.inspect(pins);
        collectGarbage(pins, state);
        if (state.running) found.push(state.running);
      }
      return found;
    });
  }

  install(attachment: Attachment, artifact: ModuleArtifact, expectedDigest: string | null): Promise<InstallResult> {
    return this.exclusive('install', async () => {
      const { manifest, digest } = artifact;
      const what = `${manifest.name}@${manifest.version}`;
      const hook = HOOKS[attachment.hook];
      const programName = validate(attachment, artifact, what);

      const pins = new AttachmentPins(this.pinRoot, attachment);
      const before = this.inspect(pins);
      if (before.running?.digest === digest) {
        return { running: before.running, changed: false, timing: { loadMs: 0, swapMs: 0 } };
      }
      requireRunning(attachment, before.running, expectedDigest);
      if (!before.running) this.requireInterface(attachment);

      const t0 = performance.now();
      const obj = openObject(artifact.object, manifest.name, what);
      let pinned = false;
      let swapped = false;
      try {
        pins.ensureDirs();
        const prog = prepare(obj, pins, attachment, programName, manifest.persistentMaps, what);
        if (before.running) this.checkpoint('before-load');
        await childSpan('bpf.load', { 'bpfleet.bpf.program': programName }, () => loadObject(obj, programName, what));
        const loadMs = performance.now() - t0;

        // Pinned before the swap, so that a crash right after it still finds the digest of
        // what the link runs.
        pinned = true;
        pinCard(pins.card(digest), { name: manifest.name, version: manifest.version, counters: manifest.counters });
        unpin(pins.prog(digest));
        bpf.objPin(prog.fd, pins.prog(digest));

        if (before.running) this.checkpoint('after-load');
        const t1 = performance.now();
        const replaced = before.running;
        if (replaced) await childSpan('bpf.swap', { 'bpfleet.prog.replaced_id': replaced.progId }, () => this.swap(pins, replaced, prog.fd, hook));
        else childSpan('bpf.attach', {}, () => this.attach(pins, prog.fd, hook));
        swapped = true;
        const swapMs = performance.now() - t1;
        if (before.running) this.checkpoint('after-swap');

        unpinReplaced(pins, digest);
        const after = this.inspect(pins).running;
        if (!after) throw new BpfleetError('INTERNAL', 'LOST_LINK', `install ${formatAttachment(attachment)}: link gone right after attaching`);
        return { running: after, changed: true, timing: { loadMs, swapMs } };
      } finally {
        obj.close();
        if (!swapped) undoInstall(pins, digest, pinned, before);
      }
    });
  }

  // Not exclusive: it only reads, synchronously, so it never sees an install half-done, and
  // telemetry should not wait for a slow verifier.
  async stats(attachment: Attachment): Promise<ProgramStats | null> {
    if (this.closed) throw closedError('stats');
    return guard('stats', () => {
      const state = this.inspect(new AttachmentPins(this.pinRoot, attachment));
      if (!state.running) return null;
      const info = withFd(bpf.progFdById(state.running.progId), bpf.progInfo);
      return {
        runCount: info.runCount,
        runTimeNs: info.runTimeNs,
        counters: readCounters(info.mapIds, state.card?.counters ?? []),
        ...this.netCounters(attachment.iface),
      };
    });
  }

  remove(attachment: Attachment): Promise<void> {
    return this.exclusive('remove', () => {
      new AttachmentPins(this.pinRoot, attachment).removeAll();
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.tail;
    this.netns?.close();
  }

  private exclusive<T>(op: string, fn: () => T | Promise<T>): Promise<T> {
    // Checked when queued: what was accepted before close() still runs to the end.
    if (this.closed) return Promise.reject(closedError(op));
    const result = this.tail.then(() => guard(op, fn));
    this.tail = result.catch(() => undefined);
    return result;
  }

  private inNetns<T>(fn: () => T): T {
    return this.netns ? this.netns.run(fn) : fn();
  }

  private requireInterface(attachment: Attachment): void {
    try {
      this.inNetns(() => bpf.ifNameToIndex(attachment.iface));
    } catch (err) {
      throw new BpfleetError('NOT_FOUND', 'NO_INTERFACE', `attach ${HOOKS[attachment.hook].linkKind} link: no interface ${attachment.iface}`, undefined, { cause: err });
    }
  }

  private inspect(pins: AttachmentPins): Inspection {
    const link = readLink(pins.link);
    // A link whose device went away is defunct (ifindex 0): it runs nothing and never will.
    if (!link || link.ifindex === 0) return { link, running: null, card: null };
    const digest = pins.progDigests().find((d) => pinnedProgId(pins.prog(d)) === link.progId);
    const card = digest ? readCard(pins.card(digest)) : null;
    const prog = withFd(bpf.progFdById(link.progId), bpf.progInfo);
    return {
      link,
      card,
      running: {
        attachment: formatAttachment(pins.attachment),
        digest: digest ?? UNKNOWN_DIGEST,
        name: card?.name ?? '',
        version: card?.version ?? '',
        progId: link.progId,
        linkId: link.id,
        progTag: prog.tag,
      },
    };
  }

  /** First install: a new link, pinned; the link fd closes either way, so a failed pin detaches. */
  private attach(pins: AttachmentPins, progFd: number, hook: Hook): void {
    const context = `attach ${hook.linkKind} link`;
    let linkFd: number;
    try {
      linkFd = this.inNetns(() => bpf.linkCreate(progFd, bpf.ifNameToIndex(pins.attachment.iface), hook.attachType));
    } catch (err) {
      if (err instanceof bpf.SysError && err.code === 'EBUSY') {
        throw new BpfleetError('FAILED_PRECONDITION', 'DRIFT',
          `${context}: ${pins.attachment.iface} already has a program bpfleet did not attach`, undefined, { cause: err });
      }
      throw new BpfleetError('INTERNAL', 'ATTACH_FAILED', `${context}: ${(err as Error).message}`, undefined, { cause: err });
    }
    try {
      // Replaces the pin of a defunct link, if any.
      unpin(pins.link);
      bpf.objPin(linkFd, pins.link);
    } finally {
      bpf.closeFd(linkFd);
    }
  }

  /** Upgrade: the kernel's compare-and-swap on the pinned link. */
  private async swap(pins: AttachmentPins, running: RunningModule, newProgFd: number, hook: Hook): Promise<void> {
    const linkFd = bpf.objGet(pins.link);
    try {
      const oldProgFd = bpf.objGet(pins.prog(running.digest));
      try {
        await bpf.linkUpdateAsync(linkFd, newProgFd, oldProgFd);
      } catch (err) {
        if (err instanceof bpf.SysError && err.code === 'EPERM') {
          throw new BpfleetError('FAILED_PRECONDITION', 'DRIFT',
            `update ${hook.linkKind} link: ${running.attachment} no longer runs ${running.digest} (program ${running.progId}); changed behind bpfleet's back`,
            undefined, { cause: err });
        }
        throw new BpfleetError('INTERNAL', 'SWAP_FAILED', `update ${hook.linkKind} link: ${(err as Error).message}`, undefined, { cause: err });
      } finally {
        bpf.closeFd(oldProgFd);
      }
    } finally {
      bpf.closeFd(linkFd);
    }
  }

  /** The namespace's own packet counts, which no module can fake. */
  private netCounters(iface: string): Pick<ProgramStats, 'ifaceRxPackets' | 'ifaceTxPackets' | 'stackRxPackets'> {
    // /proc/thread-self, not /proc/self: the netns switch moved this thread only.
    const [dev, snmp, snmp6] = this.inNetns(() => ['dev', 'snmp', 'snmp6'].map((f) => readProc(`/proc/thread-self/net/${f}`)));
    return { ...devCounters(dev ?? '', iface), stackRxPackets: ipInReceives(snmp ?? '') + ip6InReceives(snmp6 ?? '') };
  }
}

/** Null when the file does not exist (snmp6 without IPv6). */
function readProc(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

function devCounters(dev: string, iface: string): Pick<ProgramStats, 'ifaceRxPackets' | 'ifaceTxPackets'> {
  for (const line of dev.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0 || line.slice(0, colon).trim() !== iface) continue;
    const fields = line.slice(colon + 1).trim().split(/\s+/);
    // rx: bytes packets errs drop fifo frame compressed multicast; then tx: bytes packets ...
    return { ifaceRxPackets: BigInt(fields[1] ?? 0), ifaceTxPackets: BigInt(fields[9] ?? 0) };
  }
  return {};
}

// /proc/net/snmp: an "Ip:" line of field names, then an "Ip:" line of values.
function ipInReceives(snmp: string): bigint {
  const [names, values] = snmp.split('\n').filter((l) => l.startsWith('Ip:')).map((l) => l.split(/\s+/));
  const i = names?.indexOf('InReceives') ?? -1;
  return i < 0 ? 0n : BigInt(values?.[i] ?? 0);
}

// /proc/net/snmp6: one "Name value" per line.
function ip6InReceives(snmp6: string): bigint {
  const line = snmp6.split('\n').find((l) => l.startsWith('Ip6InReceives'));
  return BigInt(line?.trim().split(/\s+/)[1] ?? 0);
}

function openNetns(netns: string): NetnsSwitch {
  try {
    return NetnsSwitch.open(netns);
  } catch (err) {
    throw new BpfleetError('INVALID_ARGUMENT', 'BAD_NETNS', `netns ${netns}: ${(err as Error).message}`, undefined, { cause: err });
  }
}

// Run-time stats cost a little on every program run, so the kernel keeps them off unless
// asked. The fd from bpf_enable_stats keeps them on exactly as long as this process lives;
// it is never closed on purpose.
let runTimeStatsFd: number | null = null;
let runTimeStatsViaSysctl = false;

function enableRunTimeStats(): void {
  if (runTimeStatsFd !== null || runTimeStatsViaSysctl) return;
  try {
    runTimeStatsFd = bpf.enableRunTimeStats();
    return;
  } catch (err) {
    try {
      writeFileSync('/proc/sys/kernel/bpf_stats_enabled', '1');
      runTimeStatsViaSysctl = true;
      process.emitWarning(`bpf_enable_stats failed (${(err as Error).message}); set kernel.bpf_stats_enabled=1 instead, ` +
        'which stays on for the whole host after this agent exits');
    } catch (sysctlErr) {
      process.emitWarning(`BPF run-time stats are off, run counts will read 0: bpf_enable_stats failed (${(err as Error).message}) ` +
        `and so did kernel.bpf_stats_enabled=1 (${(sysctlErr as Error).message})`);
    }
  }
}

/** Checks everything that needs no kernel; returns the name of the program to attach. */
function validate(attachment: Attachment, artifact: ModuleArtifact, what: string): string {
  const { manifest, digest } = artifact;
  if (!DIGEST_RE.test(digest)) {
    throw new BpfleetError('INVALID_ARGUMENT', 'BAD_DIGEST', `install ${what}: digest "${digest}" is not sha256:<hex>`);
  }
  const programs = manifest.programs.filter((p) => p.hook === hookKind(attachment.hook));
  if (programs.length !== 1) {
    const has = manifest.programs.map((p) => `${p.name} (${hookName(p.hook)})`).join(', ') || 'none';
    throw new BpfleetError('INVALID_ARGUMENT', 'WRONG_HOOK',
      `install ${what}: needs exactly one program for hook ${attachment.hook}, found ${programs.length}; programs: ${has}`);
  }
  const bad = manifest.persistentMaps.find((m) => !MAP_NAME_RE.test(m));
  if (bad !== undefined) {
    throw new BpfleetError('INVALID_ARGUMENT', 'BAD_MANIFEST', `install ${what}: persistent map name "${bad}" is not a C identifier`);
  }
  requireBpfElf(artifact.object, what);
  const support = hookSupport(attachment.hook);
  if (!support.supported) {
    throw new BpfleetError('UNIMPLEMENTED', 'HOOK_NOT_SUPPORTED', `attach ${HOOKS[attachment.hook].linkKind} link: not supported: ${support.reason}`);
  }
  return programs[0]!.name;
}

/** The compare in compare-and-swap, checked before loading anything. */
function requireRunning(attachment: Attachment, running: RunningModule | null, expectedDigest: string | null): void {
  const actual = running?.digest ?? null;
  if (actual === expectedDigest && actual !== UNKNOWN_DIGEST) return;
  const say = (d: string | null) => (d === null ? 'nothing' : d === UNKNOWN_DIGEST ? 'a program bpfleet did not install' : d);
  throw new BpfleetError('FAILED_PRECONDITION', 'DRIFT',
    `install ${formatAttachment(attachment)}: expected ${say(expectedDigest)} running, found ${say(actual)}` +
      (running ? ` (program ${running.progId})` : ''));
}

function openObject(object: Uint8Array, name: string, what: string): bpf.BpfObject {
  const mark = bpf.libbpfWarningMark();
  try {
    // libbpf derives internal map names (.rodata, .bss) from the object name.
    return bpf.BpfObject.open(object, name.replace(/\W/g, '_'));
  } catch (err) {
    throw new BpfleetError('INVALID_ARGUMENT', 'BAD_OBJECT', `load ${what}: ${(err as Error).message}`, libbpfSays(mark), { cause: err });
  }
}

/** Picks the program, checks its type against the hook and wires persistent maps to pins. */
function prepare(obj: bpf.BpfObject, pins: AttachmentPins, attachment: Attachment, programName: string,
  persistentMaps: string[], what: string): bpf.BpfProgram {
  const prog = obj.program(programName);
  if (!prog) {
    const has = obj.programs().map((p) => p.name).join(', ') || 'none';
    throw new BpfleetError('INVALID_ARGUMENT', 'NO_PROGRAM', `load ${what}: no program named ${programName} in the object (has: ${has})`);
  }
  for (const other of obj.programs()) if (other.name !== programName) other.setAutoload(false);
  const want = HOOKS[attachment.hook].progType;
  // libbpf 1.1 leaves sections it does not know (e.g. "tcx/ingress") untyped: the hook decides.
  if (prog.type === bpf.BPF_PROG_TYPE_UNSPEC) prog.setType(want);
  else if (prog.type !== want) {
    throw new BpfleetError('INVALID_ARGUMENT', 'WRONG_HOOK',
      `load ${what}: program ${programName} is of type ${progTypeName(prog.type)}, hook ${attachment.hook} needs ${progTypeName(want)}`);
  }
  for (const name of persistentMaps) {
    const map = obj.map(name);
    if (!map) throw new BpfleetError('INVALID_ARGUMENT', 'NO_MAP', `load ${what}: persistent map ${name} is not in the object`);
    requireReusable(pins.map(name), name, map.spec, what);
    map.setPinPath(pins.map(name));
  }
  return prog;
}

/**
 * libbpf refuses an incompatible pinned map too, but only with EINVAL and a log line;
 * checking first names the mismatch and keeps it apart from verifier failures.
 */
function requireReusable(path: string, name: string, wanted: bpf.MapSpec, what: string): void {
  const fd = bpf.objGetIfPinned(path);
  if (fd === null) return;
  const pinned = withFd(fd, bpf.mapInfo);
  const fields: Array<[string, keyof bpf.MapSpec]> = [
    ['type', 'type'], ['key_size', 'keySize'], ['value_size', 'valueSize'], ['max_entries', 'maxEntries'], ['map_flags', 'flags'],
  ];
  const diffs = fields.filter(([, k]) => pinned[k] !== wanted[k]).map(([label, k]) => `${label} ${pinned[k]} pinned, ${wanted[k]} in module`);
  if (diffs.length) {
    throw new BpfleetError('INVALID_ARGUMENT', 'MAP_INCOMPATIBLE', `load ${what}: persistent map ${name} cannot be reused: ${diffs.join(', ')}`);
  }
}

async function loadObject(obj: bpf.BpfObject, programName: string, what: string): Promise<void> {
  const mark = bpf.libbpfWarningMark();
  try {
    await obj.load();
  } catch (err) {
    const log = obj.log().trimEnd();
    if (log) {
      throw new BpfleetError('INVALID_ARGUMENT', 'VERIFIER_REJECTED',
        `load ${what}: verifier rejected ${programName}: ${verdict(log)}`, logTail(log), { cause: err });
    }
    const code = err instanceof bpf.SysError && (err.code === 'EINVAL' || err.errno >= 4000) ? 'INVALID_ARGUMENT' : 'INTERNAL';
    throw new BpfleetError(code, 'LOAD_FAILED', `load ${what}: ${(err as Error).message}`, libbpfSays(mark), { cause: err });
  }
}

/** What libbpf warned about since `mark`, as an error's detail. */
function libbpfSays(mark: number): string | undefined {
  const warnings = bpf.libbpfWarningsSince(mark);
  return warnings.length ? warnings.join('\n') : undefined;
}

// The verifier ends with statistics ("processed N insns ..."); the reason is just above.
function verdict(log: string): string {
  const lines = log.split('\n').filter((l) => l.trim() && !l.startsWith('processed ') && !l.startsWith('verification time'));
  return lines.at(-1)?.trim() ?? 'see the verifier log';
}

function logTail(log: string): string {
  const tail = log.split('\n').slice(-LOG_TAIL_LINES).join('\n');
  return tail.length > LOG_TAIL_BYTES ? tail.slice(-LOG_TAIL_BYTES) : tail;
}

/** Nothing was swapped: take back what this install pinned, so the attachment is as before. */
function undoInstall(pins: AttachmentPins, digest: string, pinned: boolean, before: Inspection): void {
  if (pinned) pins.unpinModule(digest);
  if (!before.link) pins.removeAll();
}

/**
 * The swap is done, so the install has succeeded whatever happens here: a pin left behind
 * is garbage the next observe() collects.
 */
function unpinReplaced(pins: AttachmentPins, digest: string): void {
  try {
    for (const old of pins.progDigests()) if (old !== digest) pins.unpinModule(old);
    pins.unpinOrphanCards();
  } catch (err) {
    process.emitWarning(`install ${formatAttachment(pins.attachment)}: unpin replaced programs: ${(err as Error).message}`);
  }
}

/** After a crash mid-install or mid-remove: pins of programs that no longer run. */
function collectGarbage(pins: AttachmentPins, state: Inspection): void {
  if (!state.running) {
    pins.removeAll();
    return;
  }
  for (const digest of pins.progDigests()) if (digest !== state.running.digest) pins.unpinModule(digest);
  pins.unpinOrphanCards();
}

function readLink(path: string): bpf.LinkInfo | null {
  const fd = bpf.objGetIfPinned(path);
  if (fd === null) return null;
  return withFd(fd, bpf.linkInfo);
}

function pinnedProgId(path: string): number {
  return withFd(bpf.objGet(path), bpf.progInfo).id;
}

function readCounters(mapIds: number[], names: string[]): Record<string, bigint> {
  const counters: Record<string, bigint> = {};
  for (const id of mapIds) {
    const fd = bpf.mapFdById(id);
    try {
      const info = bpf.mapInfo(fd);
      // The kernel keeps 15 characters of a map name.
      if (info.type !== bpf.BPF_MAP_TYPE_PERCPU_ARRAY || info.name !== COUNTERS_MAP.slice(0, 15)) continue;
      names.slice(0, info.maxEntries).forEach((name, slot) => {
        counters[name] = bpf.lookupPerCpuU64(fd, slot).reduce((a, v) => a + v, 0n);
      });
      return counters;
    } finally {
      bpf.closeFd(fd);
    }
  }
  return counters;
}

function withFd<T>(fd: number, fn: (fd: number) => T): T {
  try {
    return fn(fd);
  } finally {
    bpf.closeFd(fd);
  }
}

function progTypeName(type: number): string {
  return PROG_TYPE_NAMES[type] ?? `type ${type}`;
}

async function guard<T>(op: string, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw asBpfleetError(op, err);
  }
}

function closedError(op: string): BpfleetError {
  return new BpfleetError('FAILED_PRECONDITION', 'CLOSED', `${op}: kernel driver is closed`);
}

function asBpfleetError(op: string, err: unknown): BpfleetError {
  if (err instanceof BpfleetError) return err;
  return new BpfleetError('INTERNAL', 'KERNEL', `${op}: ${err instanceof Error ? err.message : String(err)}`, undefined, { cause: err });
}
