import { performance } from 'node:perf_hooks';
import { formatAttachment, hookKind, hookName, HOOK_NAMES, type Attachment, type HookName } from '../../../common/attachment.js';
import { DIGEST_RE } from '../../../common/digest.js';
import { requireBpfElf } from '../../../common/elf.js';
import { BpfleetError } from '../../../common/errors.js';
import { childSpan } from '../../../common/spans.js';
import type { SwapCheckpoint } from '../../crash-hook.js';
import type { DataplaneDriver, InstallResult, ModuleArtifact, ProgramStats, RunningModule } from '../driver.js';
import { enableRunTimeStats, netCounters, programStats } from './counters.js';
import { hookSupport } from './features.js';
import * as bpf from './libbpf.js';
import { BpfLink, linkKind } from './link.js';
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
        if (state.running) found.push(state.running);
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
      if (replaced?.digest === artifact.digest) {
        return { running: replaced, changed: false, timing: { loadMs: 0, swapMs: 0 } };
      }
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
        return { running: after, changed: true, timing: { loadMs, swapMs } };
      } finally {
        obj.close();
        if (!swapped) undoInstall(pins, artifact.digest, pinned, before);
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
      return { ...programStats(state.running.progId, state.card?.counters ?? []), ...netCounters(attachment.iface, this.netns) };
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

  private inspect(pins: AttachmentPins): Inspection {
    const link = readLink(pins.link);
    // A link whose device went away is defunct (ifindex 0): it runs nothing and never will.
    if (!link || link.ifindex === 0) return { link, running: null, card: null };
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

  /** The one step that changes what runs: a new pinned link, or an update of the pinned one. */
  private async updateLink(pins: AttachmentPins, replaced: RunningModule | null, progFd: number): Promise<void> {
    if (replaced) await childSpan('bpf.swap', { 'bpfleet.prog.replaced_id': replaced.progId }, () => swap(pins, replaced, progFd));
    else childSpan('bpf.attach', {}, () => this.attach(pins, progFd));
  }

  /** First install: a new link, pinned; its fd closes either way, so a failed pin detaches it. */
  private attach(pins: AttachmentPins, progFd: number): void {
    const { hook, iface } = pins.attachment;
    const link = BpfLink.create(progFd, { attachType: HOOKS[hook].attachType, iface }, { netns: this.netns });
    try {
      // Replaces the pin of a defunct link, if any.
      unpin(pins.link);
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
  const prog = prepare(obj, pins, programName, artifact.manifest.persistentMaps, what);
  checkpoint('before-load');
  await childSpan('bpf.load', { 'bpfleet.bpf.program': programName }, () => loadObject(obj, programName, what));
  return prog;
}

/** Picks the program, checks its type against the hook and wires persistent maps to pins. */
function prepare(obj: bpf.BpfObject, pins: AttachmentPins, programName: string, persistentMaps: string[], what: string): bpf.BpfProgram {
  const { attachment } = pins;
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
  const pinned = bpf.withFd(fd, bpf.mapInfo);
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
