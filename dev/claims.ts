/**
 * Ownership records for what the local fleet and the tests create (namespaces, subnets, pin
 * roots, child processes, temp dirs). sweepStale() must remove a crashed run's leftovers
 * without touching the live resources of a run going on in parallel (node --test runs files
 * concurrently), and the only reliable tell is whether the process that created a resource
 * is still alive.
 *
 * A claim is a small file naming its owner by pid and kernel start time, so a recycled pid
 * is not mistaken for the owner.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onExit } from './cleanup.js';

export type ClaimKind = 'netns' | 'subnet' | 'pin' | 'proc' | 'dir';

/** A process named so that a recycled pid never matches it. */
export interface ProcRef {
  pid: number;
  start: string;
}

export interface Claim {
  kind: ClaimKind;
  id: string;
  owner: ProcRef;
  /** For 'proc' claims: the child process itself. */
  target?: ProcRef;
}

export class ClaimConflictError extends Error {
  override readonly name = 'ClaimConflictError';
  constructor(readonly claim: Claim) {
    super(`${claim.kind} "${claim.id}" is in use by live process ${claim.owner.pid}`);
  }
}

// /run is a tmpfs: claims vanish on reboot together with the namespaces and pins they describe.
const uid = process.getuid?.() ?? 0;
const CLAIMS_DIR = process.env.BPFLEET_CLAIMS_DIR
  ?? (uid === 0 ? '/run/bpfleet-e2e/claims' : join(tmpdir(), `bpfleet-e2e-claims-${uid}`));

/**
 * `pid` with its start time in clock ticks since boot (field 22 of /proc/<pid>/stat);
 * undefined when there is no such process or only its zombie is left.
 */
export function procRef(pid: number): ProcRef | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses: count from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const start = fields[19];
  if (start === undefined || fields[0] === 'Z' || fields[0] === 'X') return undefined;
  return { pid, start };
}

export function isAlive(ref: ProcRef): boolean {
  return procRef(ref.pid)?.start === ref.start;
}

let self: ProcRef | undefined;
export function selfRef(): ProcRef {
  self ??= procRef(process.pid) ?? { pid: process.pid, start: 'unknown' };
  return self;
}

function fileOf(kind: ClaimKind, id: string): string {
  return join(CLAIMS_DIR, `${kind}.${encodeURIComponent(id)}`);
}

function readClaimFile(path: string): Claim | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Claim;
  } catch {
    return undefined;
  }
}

/**
 * Records that this process owns `kind`/`id`. Throws ClaimConflictError when a live process
 * (this one included) already holds it; a claim whose owner is dead is taken over.
 */
export function claim(kind: ClaimKind, id: string, target?: ProcRef): void {
  mkdirSync(CLAIMS_DIR, { recursive: true });
  const path = fileOf(kind, id);
  const record: Claim = { kind, id, owner: selfRef(), ...(target ? { target } : {}) };
  for (;;) {
    try {
      writeFileSync(path, JSON.stringify(record), { flag: 'wx' });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const existing = readClaimFile(path);
    if (existing && isAlive(existing.owner)) throw new ClaimConflictError(existing);
    rmSync(path, { force: true });
  }
}

export function release(kind: ClaimKind, id: string): void {
  rmSync(fileOf(kind, id), { force: true });
}

export function readClaims(): Claim[] {
  let names: string[];
  try {
    names = readdirSync(CLAIMS_DIR);
  } catch {
    return [];
  }
  return names.flatMap((n) => readClaimFile(join(CLAIMS_DIR, n)) ?? []);
}

/** The live claim on `kind`/`id`, if any. */
export function liveClaim(kind: ClaimKind, id: string): Claim | undefined {
  const c = readClaimFile(fileOf(kind, id));
  return c && isAlive(c.owner) ? c : undefined;
}

const tempDirExitHooks = new Map<string, () => void>();

/**
 * A fresh directory under the system temp dir, removed on exit if nobody removed it before,
 * and claimed so that a killed run's copy gets swept.
 */
export function makeTempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `bpfleet-${label}-`));
  claim('dir', dir);
  tempDirExitHooks.set(dir, onExit(`remove ${dir}`, () => removeTempDir(dir)));
  return dir;
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  release('dir', dir);
  tempDirExitHooks.get(dir)?.();
  tempDirExitHooks.delete(dir);
}
