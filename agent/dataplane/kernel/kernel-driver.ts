import { performance } from 'node:perf_hooks';
import { formatAttachment, hookKind, hookName, HOOK_NAMES, type Attachment, type HookName } from '../../../common/attachment.js';
import { DIGEST_RE } from '../../../common/digest.js';
import { requireBpfElf } from '../../../common/elf.js';
import { BpfleetError } from '../../../common/errors.js';
import { childSpan } from '../../../common/spans.js';
import type { SwapCheckpoint } from '../../crash-hook.js';
import type { AttachmentHealth, BrokenReason, DataplaneDriver, InstallResult, ModuleArtifact, ProgramStats, RunningModule } from '../driver.js';
import { enableRunTimeStats, netCounters, programStats } from './counters.js';
import { hookSupport } from './features.js';
import * as bpf from './libbpf.js';
import { BpfLink, linkKind } from './link.js';
import { NetnsSwitch } from './netns.js';
import { AttachmentPins, pinCard, pinnedAttachments, readCard, unpin, type ModuleCard } from './pins.js';
import { ensureWitness, witnessPackets } from './witness.js';

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

const MAP_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
// Enough verifier log to see the failing instruction and the state that led to it.
const LOG_TAIL_LINES = 60;
const LOG_TAIL_BYTES = 8192;

interface Hook {
  attachType: number;
  progType: number;
}

const HOOKS: Record<HookName, Hook> = {
  xdp: { attachType: bpf.BPF_XDP, progType: bpf.BPF_PROG_TYPE_XDP },
  'tcx-ingress': { attachType: bpf.BPF_TCX_INGRESS, progType: bpf.BPF_PROG_TYPE_SCHED_CLS },
  'tcx-egress': { attachType: bpf.BPF_TCX_EGRESS, progType: bpf.BPF_PROG_TYPE_SCHED_CLS },
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
 * See ARCHITECTURE.md, "Agent: how a swap behaves".
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
        if (!state.running) continue;
        // Pins of an agent that predates the witness, or a witness someone removed.
        this.ensureWitness(pins);
        found.push(state.running);
      }
      return found;
    });
  }

  check(): Promise<AttachmentHealth[]> {
    return this.exclusive('check', () => {
      const netnsGone = this.netns?.gone() ?? null;
      const found: AttachmentHealth[] = [];
      for (const attachment of pinnedAttachments(this.pinRoot)) {
        const health = this.checkOne(new AttachmentPins(this.pinRoot, attachment), netnsGone);
        if (health) found.push(health);
      }
      return found;
    });
  }

  /**
   * validate → inspect → load → pin → link.update → unpin. Whatever fails before the link
   * update takes back what it pinned, so the attachment is as it was.
   */
  install(attachment: Attachment, artifact: ModuleArtifact, expectedDigest: string | null): Promise<InstallResult> {
    return this.exclusive('install', async () => {
      const programName = validate(attachment, artifact);
      const pins = new AttachmentPins(this.pinRoot, attachment);
      const before = this.inspect(pins);
      const replaced = before.running;
      if (replaced?.digest === artifact.digest) return relabel(pins, before, artifact, programName, expectedDigest);
      requireRunning(attachment, replaced, expectedDigest);
      if (!replaced) this.requireInterface(attachment);
      // The crash points are those of a swap (crash-hook.ts): a first attach has none.
      const checkpoint: SwapCheckpoint = replaced ? this.checkpoint : () => undefined;

      const t0 = performance.now();
      const obj = openObject(artifact);
      let pinned = false;
      let swapped = false;
      try {
        const prog = await load(obj, pins, artifact, programName, checkpoint);
        const loadMs = performance.now() - t0;
        pinned = true;
        pinModule(pins, artifact, prog.fd);
        checkpoint('after-load');
        const t1 = performance.now();
        await this.updateLink(pins, replaced, prog.fd);
        swapped = true;
        const swapMs = performance.now() - t1;
        checkpoint('after-swap');
        unpinReplaced(pins, artifact.digest);
        const after = this.inspect(pins).running;
        if (!after) throw new BpfleetError('INTERNAL', 'LOST_LINK', `install ${formatAttachment(attachment)}: link gone right after attaching`);
        this.ensureWitness(pins);
        return { running: after, changed: true, timing: { loadMs, swapMs } };
      } finally {
        obj.close();
        if (!swapped) undoInstall(pins, artifact.digest, pinned, before);
      }
    });
  }

  /**
   * What install would do up to the swap, with nothing kept: the object is opened, its
   * program for the hook picked, every persistent map named found, and the whole object
   * loaded through the verifier with CO-RE relocated against this kernel's BTF; then it is
   * all closed. No pin, map or link is touched. Throws what install throws for the same
   * object (VERIFIER_REJECTED with the log, BAD_OBJECT, NO_PROGRAM, WRONG_HOOK, NO_MAP,
   * LOAD_FAILED, HOOK_UNSUPPORTED); resolves with the load time in ms. The pre-flight of a
   * rollout on one host per kernel.
   */
  verify(attachment: Attachment, artifact: ModuleArtifact): Promise<{ loadMs: number }> {
    return this.exclusive('verify', async () => {
      const programName = validate(attachment, artifact);
      const what = moduleLabel(artifact);
      const t0 = performance.now();
      const obj = openObject(artifact);
      try {
        pickProgram(obj, attachment, programName, what);
        const missing = artifact.manifest.persistentMaps.find((name) => !obj.map(name));
        if (missing !== undefined) throw new BpfleetError('INVALID_ARGUMENT', 'NO_MAP', `load ${what}: persistent map ${missing} is not in the object`);
        await loadObject(obj, programName, what);
        return { loadMs: performance.now() - t0 };
      } finally {
        obj.close();
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
      const net = netCounters(attachment.iface, this.netns);
      const witnessed = attachment.hook === 'xdp' ? witnessPackets(new AttachmentPins(this.pinRoot, attachment).witness) : null;
      return { ...programStats(state.running.progId, state.card?.counters ?? []), ...net, stackRxPackets: witnessed ?? net.stackRxPackets };
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
      throw new BpfleetError('NOT_FOUND', 'NO_INTERFACE', `attach ${linkKindOf(attachment.hook)} link: no interface ${attachment.iface}`, undefined, { cause: err });
    }
  }

  /** The interface's ifindex in the driver's namespace; null when no interface has that name. */
  private ifindexOf(iface: string): number | null {
    try {
      return this.inNetns(() => bpf.ifNameToIndex(iface));
    } catch (err) {
      if (err instanceof bpf.SysError && err.code === 'ENODEV') return null;
      throw err;
    }
  }

  private inspect(pins: AttachmentPins): Inspection {
    const link = readLink(pins.link);
    // A link whose device went away is defunct (ifindex 0): it runs nothing and never will.
    // One whose device was renamed runs, but not on the interface the attachment names.
    if (!link || link.ifindex === 0 || link.ifindex !== this.ifindexOf(pins.attachment.iface)) return { link, running: null, card: null };
    const digest = pins.progDigests().find((d) => pinnedProgId(pins.prog(d)) === link.progId);
    const card = digest ? readCard(pins.card(digest)) : null;
    const prog = bpf.withFd(bpf.progFdById(link.progId), bpf.progInfo);
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

  /**
   * One attachment against the kernel; null when it has no link pin (an install that never
   * attached: observe() collects it). What bpfleet installed is the pinned program the link
   * holds, defunct or not.
   */
  private checkOne(pins: AttachmentPins, netnsGone: string | null): AttachmentHealth | null {
    const link = readLink(pins.link);
    if (!link) return null;
    const key = formatAttachment(pins.attachment);
    const { iface } = pins.attachment;
    const digest = pins.progDigests().find((d) => pinnedProgId(pins.prog(d)) === link.progId) ?? null;
    const card = digest ? readCard(pins.card(digest)) : null;
    const broken = (reason: BrokenReason, message: string): AttachmentHealth => ({
      attachment: key, status: 'broken', digest: digest ?? UNKNOWN_DIGEST, name: card?.name ?? '', version: card?.version ?? '', reason,
      message: `${key}: ${message}`,
    });
    if (netnsGone) return broken('NETNS_GONE', `${netnsGone}; restart the agent with a namespace that exists`);
    const ifindex = this.ifindexOf(iface);
    if (link.ifindex !== 0 && link.ifindex === ifindex) {
      this.ensureWitness(pins);
      return { attachment: key, status: 'running', running: this.inspect(pins).running!, reattached: false };
    }
    if (ifindex === null) {
      if (link.ifindex === 0) return broken('NO_INTERFACE', `interface ${iface} is gone; the module is attached again when it comes back`);
      const now = this.inNetns(() => bpf.ifIndexToName(link.ifindex)) ?? `ifindex ${link.ifindex}`;
      return broken('IFACE_RENAMED', `interface ${iface} was renamed to ${now}, where the program still runs; ` +
        `it moves back when an interface is named ${iface} again`);
    }
    if (!digest) return broken('NOT_ATTACHED', `the link holds program ${link.progId}, which bpfleet did not pin`);
    // The name is back (re-created, or renamed back, or another interface took it): the same
    // program, with its persistent maps, goes on the interface that has the name now.
    try {
      bpf.withFd(bpf.objGet(pins.prog(digest)), (progFd) => this.attach(pins, progFd));
    } catch (err) {
      const reason = err instanceof BpfleetError && err.reason === 'MTU_TOO_LARGE' ? 'MTU_TOO_LARGE' : 'REATTACH_FAILED';
      return broken(reason, `attach again on ${iface} (ifindex ${ifindex}): ${(err as Error).message}`);
    }
    const running = this.inspect(pins).running;
    if (!running) return broken('REATTACH_FAILED', `attached again on ${iface}, but the link runs nothing`);
    this.ensureWitness(pins);
    return { attachment: key, status: 'running', running, reattached: true };
  }

  /**
   * XDP attachments get a drop witness (witness.ts). Without one (tcx older than 6.6, say)
   * stats() falls back to the namespace's IP counters, so a failure here fails no install.
   */
  private ensureWitness(pins: AttachmentPins): void {
    if (pins.attachment.hook !== 'xdp') return;
    try {
      ensureWitness(pins.witness, pins.attachment.iface, this.netns);
    } catch (err) {
      process.emitWarning(`${formatAttachment(pins.attachment)}: no drop witness, stats fall back to the namespace's IP counters: ${(err as Error).message}`);
    }
  }

  /** The one step that changes what runs: a new pinned link, or an update of the pinned one. */
  private async updateLink(pins: AttachmentPins, replaced: RunningModule | null, progFd: number): Promise<void> {
    if (replaced) await childSpan('bpf.swap', { 'bpfleet.prog.replaced_id': replaced.progId }, () => swap(pins, replaced, progFd));
    else childSpan('bpf.attach', {}, () => this.attach(pins, progFd));
  }

  /**
   * A new link, pinned; its fd closes either way, so a failed pin detaches it. It replaces the
   * pinned link, if any, only once it is attached: that one is defunct (its interface went
   * away) or runs on an interface renamed since, which is no longer the attachment's.
   */
  private attach(pins: AttachmentPins, progFd: number): void {
    const { hook, iface } = pins.attachment;
    const link = BpfLink.create(progFd, { attachType: HOOKS[hook].attachType, iface }, { netns: this.netns });
    try {
      retireLink(pins.link);
      link.pin(pins.link);
    } finally {
      link.close();
    }
  }
}

function openNetns(netns: string): NetnsSwitch {
  try {
    return NetnsSwitch.open(netns);
  } catch (err) {
    throw new BpfleetError('INVALID_ARGUMENT', 'BAD_NETNS', `netns ${netns}: ${(err as Error).message}`, undefined, { cause: err });
  }
}

/** Checks everything that needs no kernel; returns the name of the program to attach. */
function validate(attachment: Attachment, artifact: ModuleArtifact): string {
  const { manifest, digest } = artifact;
  const what = moduleLabel(artifact);
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
    throw new BpfleetError('UNIMPLEMENTED', 'HOOK_UNSUPPORTED', `attach ${linkKindOf(attachment.hook)} link: not supported: ${support.reason}`);
  }
  return programs[0]!.name;
}

/**
 * What runs is identified by object and manifest. The object already runs here: under the
 * manifest its card records, the install is a no-op. Under another one (a new version of the
 * same bytes, replacing `expectedDigest` as any install: DRIFT otherwise) the program stays,
 * no reload, same program id, once the manifest is checked
 * against what runs: its program for the hook must be the running one
 * (SAME_OBJECT_OTHER_PROGRAM otherwise: attaching another program of the object needs an
 * object of its own), and each persistent map must be a map of the running program (NO_MAP).
 * Then the maps it names are pinned, the ones it no longer names unpinned, and the card
 * replaced in one step: the attachment runs the new name@version with its counter names.
 */
function relabel(pins: AttachmentPins, state: Inspection, artifact: ModuleArtifact, programName: string, expectedDigest: string | null): InstallResult {
  const running = state.running!;
  const { manifest } = artifact;
  const card: ModuleCard = { name: manifest.name, version: manifest.version, counters: [...manifest.counters] };
  const unchanged = { running, changed: false, timing: { loadMs: 0, swapMs: 0 } };
  if (state.card && JSON.stringify(state.card) === JSON.stringify(card)) return unchanged;
  requireRunning(pins.attachment, running, expectedDigest);
  const what = moduleLabel(artifact);
  const prog = bpf.withFd(bpf.progFdById(running.progId), bpf.progInfo);
  // The kernel keeps 15 characters of a program's name.
  if (prog.name !== programName.slice(0, 15)) {
    throw new BpfleetError('FAILED_PRECONDITION', 'SAME_OBJECT_OTHER_PROGRAM',
      `install ${what} on ${running.attachment}: its object ${running.digest} already runs there as program ${prog.name} ` +
        `(${running.name}@${running.version}), and this manifest attaches ${programName}; a version that attaches another program needs an object of its own`);
  }
  const maps = new Map<string, number>();
  for (const id of prog.mapIds) maps.set(bpf.withFd(bpf.mapFdById(id), bpf.mapInfo).name, id);
  const missing = manifest.persistentMaps.filter((name) => !maps.has(name.slice(0, 15)));
  if (missing.length) {
    throw new BpfleetError('INVALID_ARGUMENT', 'NO_MAP',
      `install ${what} on ${running.attachment}: persistent map ${missing.join(', ')} is not a map of the running program ${prog.name} (same object)`);
  }
  pins.ensureDirs();
  for (const name of manifest.persistentMaps) {
    const id = maps.get(name.slice(0, 15))!;
    const pinned = bpf.objGetIfPinned(pins.map(name));
    if (pinned !== null) {
      const same = bpf.withFd(pinned, bpf.mapInfo).id === id;
      if (same) continue;
      unpin(pins.map(name));
    }
    bpf.withFd(bpf.mapFdById(id), (fd) => bpf.objPin(fd, pins.map(name)));
  }
  for (const name of pins.mapNames()) if (!manifest.persistentMaps.includes(name)) unpin(pins.map(name));
  pinCard(pins.card(artifact.digest), card);
  return { running: { ...running, name: card.name, version: card.version }, changed: true, timing: { loadMs: 0, swapMs: 0 } };
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

function openObject(artifact: ModuleArtifact): bpf.BpfObject {
  const mark = bpf.libbpfWarningMark();
  try {
    // libbpf derives internal map names (.rodata, .bss) from the object name.
    return bpf.BpfObject.open(artifact.object, artifact.manifest.name.replace(/\W/g, '_'));
  } catch (err) {
    throw new BpfleetError('INVALID_ARGUMENT', 'BAD_OBJECT', `load ${moduleLabel(artifact)}: ${(err as Error).message}`, libbpfSays(mark), { cause: err });
  }
}

/** Wires the object to the pins and runs the verifier; returns the program to attach. */
async function load(obj: bpf.BpfObject, pins: AttachmentPins, artifact: ModuleArtifact, programName: string,
  checkpoint: SwapCheckpoint): Promise<bpf.BpfProgram> {
  const what = moduleLabel(artifact);
  pins.ensureDirs();
  const prog = prepare(obj, pins, programName, artifact.manifest.name, artifact.manifest.persistentMaps, what);
  checkpoint('before-load');
  await childSpan('bpf.load', { 'bpfleet.bpf.program': programName }, () => loadObject(obj, programName, what));
  return prog;
}

/** The object's program for the hook, the only one it will load, typed for the hook (NO_PROGRAM, WRONG_HOOK). */
function pickProgram(obj: bpf.BpfObject, attachment: Attachment, programName: string, what: string): bpf.BpfProgram {
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
  return prog;
}

/**
 * Picks the program, checks its type against the hook and wires persistent maps to pins:
 * this attachment's own, else one another attachment of the module uses (siblingMap).
 */
function prepare(obj: bpf.BpfObject, pins: AttachmentPins, programName: string, moduleName: string, persistentMaps: string[], what: string): bpf.BpfProgram {
  const prog = pickProgram(obj, pins.attachment, programName, what);
  const inUse = pinnedMapIds(pins);
  for (const name of persistentMaps) {
    const map = obj.map(name);
    if (!map) throw new BpfleetError('INVALID_ARGUMENT', 'NO_MAP', `load ${what}: persistent map ${name} is not in the object`);
    const own = pinnedMapInUse(pins.map(name), inUse, what);
    const fd = own ?? siblingMap(pins, moduleName, name);
    if (fd === null) {
      // libbpf creates it and pins it here.
      map.setPinPath(pins.map(name));
      continue;
    }
    // Reused by fd, not by pin path: libbpf 1.1 would compare every map_flags bit itself,
    // kernel-added ones included, and refuse a map this check accepts.
    try {
      requireReusable(fd, name, map.spec, what);
      map.reuseFd(fd);
      // A sibling's map is pinned here too, so this attachment's next version finds it even
      // when the sibling is gone. Left by a failed load, the pin is one the linked program
      // does not use: the next install unpins it (pinnedMapInUse).
      if (own === null) bpf.objPin(fd, pins.map(name));
    } finally {
      bpf.closeFd(fd);
    }
  }
  return prog;
}

/**
 * Persistent maps that stay per attachment even when other attachments run the same module:
 * telemetry reads bpfleet_counters per attachment (counters.ts).
 */
const PER_ATTACHMENT_MAPS: ReadonlySet<string> = new Set(['bpfleet_counters']);

/**
 * An fd of persistent map `name` of another attachment of this pin root whose link holds a
 * program of module `moduleName` that uses that map: one module's programs share their
 * maps, as the programs of one object do when libbpf loads it once. Null when there is none.
 * Attachments that made maps of their own before they shared (an older agent) keep them.
 */
function siblingMap(pins: AttachmentPins, moduleName: string, name: string): number | null {
  if (PER_ATTACHMENT_MAPS.has(name)) return null;
  const self = formatAttachment(pins.attachment);
  for (const attachment of pinnedAttachments(pins.pinRoot)) {
    if (formatAttachment(attachment) === self) continue;
    const sibling = new AttachmentPins(pins.pinRoot, attachment);
    const link = readLink(sibling.link);
    if (!link) continue;
    const digest = sibling.progDigests().find((d) => pinnedProgId(sibling.prog(d)) === link.progId);
    if (!digest || readCard(sibling.card(digest))?.name !== moduleName) continue;
    const fd = bpf.objGetIfPinned(sibling.map(name));
    if (fd === null) continue;
    if (pinnedMapIds(sibling).has(bpf.mapInfo(fd).id)) return fd;
    bpf.closeFd(fd);
  }
  return null;
}

/**
 * Ids of the maps of the program the attachment's link holds (running, or kept for when its
 * interface returns): the only maps a persistent map pin may stand for.
 */
function pinnedMapIds(pins: AttachmentPins): Set<number> {
  const link = readLink(pins.link);
  if (!link) return new Set();
  return new Set(bpf.withFd(bpf.progFdById(link.progId), bpf.progInfo).mapIds);
}

/**
 * An fd of the map pinned at `path` when a pinned program uses it; null when nothing is
 * pinned there, or when what is pinned is left over from an install that never swapped (an
 * upgrade that crashed after load): the linked program does not use that map, so a later version must not
 * be judged against it. The leftover is unpinned.
 */
function pinnedMapInUse(path: string, inUse: Set<number>, what: string): number | null {
  const fd = bpf.objGetIfPinned(path);
  if (fd === null) return null;
  const { id } = bpf.mapInfo(fd);
  if (inUse.has(id)) return fd;
  bpf.closeFd(fd);
  process.emitWarning(`load ${what}: unpinned ${path} (map ${id}), which the attached program does not use: left by an install that never swapped`);
  unpin(path);
  return null;
}

/**
 * Flags the kernel sets on a map of its own accord, which a module's definition never has:
 * devmaps are read-only to programs (kernel/bpf/devmap.c, dev_map_alloc_check/init).
 */
function kernelAddedFlags(type: number): number {
  return type === bpf.BPF_MAP_TYPE_DEVMAP || type === bpf.BPF_MAP_TYPE_DEVMAP_HASH ? bpf.BPF_F_RDONLY_PROG : 0;
}

/**
 * A pinned map can stand for the module's definition when the fields that make a map what
 * it is agree: type, key and value size, max entries, and the flags the module asked for
 * (map_flags without those the kernel adds). Checked here rather than left to libbpf, which
 * says only EINVAL and a log line, so the mismatch is named apart from verifier failures.
 */
function requireReusable(fd: number, name: string, wanted: bpf.MapSpec, what: string): void {
  const info = bpf.mapInfo(fd);
  const pinned = { ...info, flags: info.flags & ~kernelAddedFlags(info.type) };
  const module = { ...wanted, flags: wanted.flags & ~kernelAddedFlags(wanted.type) };
  const fields: Array<[string, keyof bpf.MapSpec]> = [
    ['type', 'type'], ['key_size', 'keySize'], ['value_size', 'valueSize'], ['max_entries', 'maxEntries'], ['map_flags', 'flags'],
  ];
  const diffs = fields.filter(([, k]) => pinned[k] !== module[k]).map(([label, k]) => `${label} ${pinned[k]} pinned, ${module[k]} in module`);
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

/**
 * Pinned before the swap, program after card, so that a crash right after the swap still
 * finds the digest (and the card) of what the link runs.
 */
function pinModule(pins: AttachmentPins, artifact: ModuleArtifact, progFd: number): void {
  const { manifest, digest } = artifact;
  pinCard(pins.card(digest), { name: manifest.name, version: manifest.version, counters: manifest.counters });
  unpin(pins.prog(digest));
  bpf.objPin(progFd, pins.prog(digest));
}

/** Upgrade: the kernel's compare-and-swap on the pinned link, expecting `running`'s pinned program. */
async function swap(pins: AttachmentPins, running: RunningModule, newProgFd: number): Promise<void> {
  const link = BpfLink.openPinned(pins.link);
  try {
    const oldProgFd = bpf.objGet(pins.prog(running.digest));
    try {
      await link.update(newProgFd, {
        expectedProgFd: oldProgFd,
        drift: `${running.attachment} no longer runs ${running.digest} (program ${running.progId}); changed behind bpfleet's back`,
      });
    } finally {
      bpf.closeFd(oldProgFd);
    }
  } finally {
    link.close();
  }
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

/** Detaches and unpins the link pinned at `path`, if any. */
function retireLink(path: string): void {
  const old = BpfLink.openIfPinned(path);
  if (!old) return;
  try {
    if (old.info().ifindex !== 0) old.detach();
    old.unpin();
  } finally {
    old.close();
  }
}

/**
 * After a crash mid-install or mid-remove: pins of programs that no longer run. An
 * attachment whose link is pinned but runs nothing here (its interface is gone or renamed)
 * keeps the program the link holds, for check() to attach again.
 */
function collectGarbage(pins: AttachmentPins, state: Inspection): void {
  if (!state.link) {
    pins.removeAll();
    return;
  }
  if (!state.running) {
    const held = pins.progDigests().filter((d) => pinnedProgId(pins.prog(d)) === state.link!.progId);
    for (const digest of pins.progDigests()) if (!held.includes(digest)) pins.unpinModule(digest);
    pins.unpinOrphanCards();
    return;
  }
  for (const digest of pins.progDigests()) if (digest !== state.running.digest) pins.unpinModule(digest);
  pins.unpinOrphanCards();
}

function readLink(path: string): bpf.LinkInfo | null {
  const link = BpfLink.openIfPinned(path);
  if (!link) return null;
  try {
    return link.info();
  } finally {
    link.close();
  }
}

function pinnedProgId(path: string): number {
  return bpf.withFd(bpf.objGet(path), bpf.progInfo).id;
}

function moduleLabel(artifact: ModuleArtifact): string {
  return `${artifact.manifest.name}@${artifact.manifest.version}`;
}

function linkKindOf(hook: HookName): string {
  return linkKind(HOOKS[hook].attachType);
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
