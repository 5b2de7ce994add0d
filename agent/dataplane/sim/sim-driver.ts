import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { formatAttachment, HOOK_NAMES, hookKind, type Attachment } from '../../../common/attachment.js';
import { requireBpfElf } from '../../../common/elf.js';
import { BpfleetError } from '../../../common/errors.js';
import { childSpan } from '../../../common/spans.js';
import type {
  AttachmentHealth,
  DataplaneDriver,
  InstallResult,
  ModuleArtifact,
  ProgramStats,
  RunningModule,
} from '../driver.js';
import { SimCrash, type CrashPoint, type SimFaults } from './faults.js';
import {
  DEFAULT_BEHAVIOUR,
  runningModule,
  SimHostState,
  type ModuleBehaviour,
  type SimLink,
  type SimProgram,
} from './host.js';
import { advanceTraffic, linkStats } from './traffic.js';
import { verifierRejection } from './verifier.js';

export interface SimDriverOptions {
  /** The host's kernel state; pass a previous driver's `host` to simulate an agent restart. */
  host?: SimHostState;
  faults?: SimFaults;
  /** Packets per second offered to each interface in each direction. Default 1000. */
  pps?: number;
  /** Simulated wall clock in ms that drives traffic. Default Date.now. */
  now?: () => number;
  /** How each module treats traffic. Default: drops nothing, 100 ns per packet. */
  behaviour?: (artifact: ModuleArtifact) => ModuleBehaviour;
}

/**
 * A dataplane in memory that answers like the kernel driver: same validation, same
 * compare-and-swap, same errors, with injectable faults and synthetic traffic, so that one
 * process can run thousands of agents.
 */
export class SimDriver implements DataplaneDriver {
  readonly kind = 'sim';
  readonly host: SimHostState;
  faults: SimFaults;
  readonly pps: number;
  private readonly now: () => number;
  private readonly behaviour: (artifact: ModuleArtifact) => ModuleBehaviour;
  /** Set when the simulated agent process crashed or closed: it does nothing more. */
  private dead: Error | null = null;

  constructor(opts: SimDriverOptions = {}) {
    this.host = opts.host ?? new SimHostState();
    this.faults = opts.faults ?? {};
    this.pps = opts.pps ?? 1000;
    if (!(this.pps >= 0 && Number.isFinite(this.pps))) throw new RangeError(`sim driver: pps ${this.pps} is not a rate`);
    this.now = opts.now ?? Date.now;
    this.behaviour = opts.behaviour ?? (() => DEFAULT_BEHAVIOUR);
  }

  capabilities(): string[] {
    return [...HOOK_NAMES];
  }

  async observe(): Promise<RunningModule[]> {
    this.requireAlive();
    return this.host.observe();
  }

  async install(attachment: Attachment, artifact: ModuleArtifact, expectedDigest: string | null): Promise<InstallResult> {
    this.requireAlive();
    const { name, version } = artifact.manifest;
    const context = `install ${name}@${version} on ${formatAttachment(attachment)}`;
    requireBpfElf(artifact.object, context);
    const programName = programFor(attachment, artifact, context);

    const before = this.host.running(attachment);
    if (before?.program.digest === artifact.digest) return relabel(before, artifact, 0, expectedDigest, context);
    requireRunning(before, expectedDigest, context);
    if (!before && this.host.deletedInterfaces.has(attachment.iface)) {
      throw new BpfleetError('NOT_FOUND', 'NO_INTERFACE', `${context}: no interface ${attachment.iface}`);
    }

    this.crashAt('before-load', attachment);
    const loadStart = performance.now();
    const program = await childSpan('bpf.load', { 'bpfleet.bpf.program': programName }, () => this.load(artifact, programName, context));
    const loadMs = performance.now() - loadStart;
    this.requireAlive();
    this.crashAt('after-load', attachment);

    // The check above ran before the load; whatever landed meanwhile (a concurrent install,
    // a drift) is judged again here, as BPF_F_REPLACE judges it in the kernel.
    const swapStart = performance.now();
    const current = this.host.running(attachment);
    if (current?.program.digest === artifact.digest) return relabel(current, artifact, loadMs, expectedDigest, context);
    requireRunning(current, expectedDigest, context);
    advanceTraffic(this.host, this.now(), this.pps);
    const link = childSpan(current ? 'bpf.swap' : 'bpf.attach', {}, () => this.host.attach(attachment, program));
    const swapMs = performance.now() - swapStart;
    this.crashAt('after-swap', attachment);
    return { running: runningModule(link), changed: true, timing: { loadMs, swapMs } };
  }

  async verify(attachment: Attachment, artifact: ModuleArtifact): Promise<{ loadMs: number }> {
    this.requireAlive();
    const { name, version } = artifact.manifest;
    const context = `load ${name}@${version} for ${formatAttachment(attachment)}`;
    requireBpfElf(artifact.object, context);
    const programName = programFor(attachment, artifact, context);
    const started = performance.now();
    await this.verifierPass(artifact, programName, context);
    checkBehaviour(this.behaviour(artifact), context);
    return { loadMs: performance.now() - started };
  }

  async check(): Promise<AttachmentHealth[]> {
    this.requireAlive();
    const found: AttachmentHealth[] = this.host.observe().map((running) => ({ attachment: running.attachment, status: 'running', running, reattached: false }));
    for (const [key, link] of [...this.host.defunct]) {
      const { digest, name, version } = link.program;
      if (this.host.deletedInterfaces.has(link.attachment.iface)) {
        found.push({ attachment: key, status: 'broken', digest, name, version, reason: 'NO_INTERFACE',
          message: `${key}: interface ${link.attachment.iface} is gone; the module is attached again when it comes back` });
        continue;
      }
      this.host.defunct.delete(key);
      const running = runningModule(this.host.attach(link.attachment, link.program));
      found.push({ attachment: key, status: 'running', running, reattached: true });
    }
    return found.sort((a, b) => a.attachment.localeCompare(b.attachment));
  }

  async stats(attachment: Attachment): Promise<ProgramStats | null> {
    this.requireAlive();
    const link = this.host.running(attachment);
    if (!link) return null;
    advanceTraffic(this.host, this.now(), this.pps);
    return linkStats(this.host, link);
  }

  async remove(attachment: Attachment): Promise<void> {
    this.requireAlive();
    advanceTraffic(this.host, this.now(), this.pps);
    this.host.detach(attachment);
  }

  async close(): Promise<void> {
    this.dead ??= new BpfleetError('FAILED_PRECONDITION', 'CLOSED', 'sim driver is closed');
  }

  /**
   * Someone else changes the host behind the agent's back (bpftool, a second agent): the
   * attachment now runs a foreign program with `digest`, or nothing when null. Works on a
   * dead driver too: the host does not care whether the agent is alive.
   */
  driftNow(attachment: Attachment, digest: string | null): void {
    advanceTraffic(this.host, this.now(), this.pps);
    if (digest === null) {
      this.host.detach(attachment);
      return;
    }
    const foreign = this.host.load({
      digest,
      name: 'unknown',
      version: 'unknown',
      counterNames: [],
      pinsCounters: false,
      behaviour: DEFAULT_BEHAVIOUR,
    });
    this.host.attach(attachment, foreign);
  }

  /** What the kernel's verifier would take: the injected load delay, then the injected rejection, if any. */
  private async verifierPass(artifact: ModuleArtifact, programName: string, context: string): Promise<void> {
    const { loadDelayMs = 0 } = this.faults;
    if (loadDelayMs > 0) await delay(loadDelayMs);
    const verdict = this.faults.verifierReject?.(artifact) ?? false;
    if (verdict) throw verifierRejection(context, programName, typeof verdict === 'string' ? verdict : undefined);
  }

  private async load(artifact: ModuleArtifact, programName: string, context: string): Promise<SimProgram> {
    await this.verifierPass(artifact, programName, context);
    const { manifest } = artifact;
    return this.host.load({
      digest: artifact.digest,
      name: manifest.name,
      version: manifest.version,
      counterNames: [...manifest.counters],
      pinsCounters: manifest.persistentMaps.includes('bpfleet_counters'),
      behaviour: checkBehaviour(this.behaviour(artifact), context),
    });
  }

  private crashAt(point: CrashPoint, attachment: Attachment): void {
    if (this.faults.crashMidSwap !== point) return;
    const crash = new SimCrash(point, formatAttachment(attachment));
    this.dead = crash;
    throw crash;
  }

  private requireAlive(): void {
    if (this.dead) throw this.dead;
  }
}

function programFor(attachment: Attachment, artifact: ModuleArtifact, context: string): string {
  const { programs } = artifact.manifest;
  const program = programs.find((p) => p.hook === hookKind(attachment.hook));
  if (!program) {
    const has = programs.map((p) => `${p.name} (${p.hook})`).join(', ') || 'none';
    throw new BpfleetError('INVALID_ARGUMENT', 'WRONG_HOOK', `${context}: no program for hook ${attachment.hook}; the manifest has ${has}`);
  }
  return program.name;
}

function requireRunning(link: SimLink | undefined, expectedDigest: string | null, context: string): void {
  const running = link?.program.digest ?? null;
  if (running === expectedDigest) return;
  throw new BpfleetError('FAILED_PRECONDITION', 'DRIFT',
    `${context}: attachment runs ${running ?? 'nothing'}, expected ${expectedDigest ?? 'nothing'}`);
}

function unchanged(link: SimLink, loadMs: number): InstallResult {
  return { running: runningModule(link), changed: false, timing: { loadMs, swapMs: 0 } };
}

/**
 * The object already runs: under this manifest too, it is a no-op; under another one (a new
 * version of the same bytes), the program stays and takes the manifest's name, version and
 * counters, as the kernel driver re-pins its card (docs/DATAPLANE.md, "Same object").
 */
function relabel(link: SimLink, artifact: ModuleArtifact, loadMs: number, expectedDigest: string | null, context: string): InstallResult {
  const { name, version, counters, persistentMaps } = artifact.manifest;
  const p = link.program;
  if (p.name === name && p.version === version && p.counterNames.join('\n') === counters.join('\n')) return unchanged(link, loadMs);
  requireRunning(link, expectedDigest, context);
  Object.assign(p, { name, version, counterNames: [...counters], pinsCounters: persistentMaps.includes('bpfleet_counters') });
  return { running: runningModule(link), changed: true, timing: { loadMs, swapMs: 0 } };
}

function checkBehaviour(b: ModuleBehaviour, context: string): ModuleBehaviour {
  if (!(b.dropRate >= 0 && b.dropRate <= 1) || !(b.runTimeNsPerPacket >= 0)) {
    throw new RangeError(`${context}: sim behaviour ${JSON.stringify(b)} needs dropRate in 0..1 and runTimeNsPerPacket >= 0`);
  }
  return { ...b };
}
