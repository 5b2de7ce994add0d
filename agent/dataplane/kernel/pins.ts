import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { formatAttachment, parseAttachment, type Attachment } from '../../../common/attachment.js';
import * as bpf from './libbpf.js';
import { BpfLink } from './link.js';
import { removeWitness } from './witness.js';

/**
 * Everything the kernel driver remembers lives in bpffs under its pinRoot, so that what it
 * remembers can never disagree with what the kernel runs:
 *
 *   <pinRoot>/<attachment>/link           the bpf_link; keeps the program attached
 *   <pinRoot>/<attachment>/progs/<hex>    a loaded program, by module digest
 *   <pinRoot>/<attachment>/cards/<hex>    its module card: name, version, counter names
 *   <pinRoot>/<attachment>/maps/<name>    the manifest's persistent maps
 *   <pinRoot>/<attachment>/witness        xdp only: the drop witness's tcx link (witness.ts)
 *
 * The module card is the sidecar that maps a digest back to what the module calls itself.
 * bpffs holds no regular files, and a pin name is too small for it (at most 255 bytes, no
 * dots: versions and counter lists do not fit). A JSON file elsewhere would need a second
 * per-agent path and could disagree with the pins after a crash. So the card is a frozen
 * one-entry array map, written and frozen before it is pinned (it appears whole or not at
 * all), pinned before its program, and removed with it.
 */
export class AttachmentPins {
  readonly dir: string;
  readonly link: string;
  readonly progsDir: string;
  readonly cardsDir: string;
  readonly mapsDir: string;
  readonly witness: string;

  constructor(readonly pinRoot: string, readonly attachment: Attachment) {
    this.dir = join(pinRoot, dirName(attachment));
    this.link = join(this.dir, 'link');
    this.progsDir = join(this.dir, 'progs');
    this.cardsDir = join(this.dir, 'cards');
    this.mapsDir = join(this.dir, 'maps');
    this.witness = join(this.dir, 'witness');
  }

  prog(digest: string): string {
    return join(this.progsDir, digestHex(digest));
  }

  card(digest: string): string {
    return join(this.cardsDir, digestHex(digest));
  }

  map(name: string): string {
    return join(this.mapsDir, name);
  }

  /** Digests ("sha256:<hex>") of the pinned programs. */
  progDigests(): string[] {
    return listDir(this.progsDir).map((hex) => `sha256:${hex}`);
  }

  /** Names of the pinned persistent maps. */
  mapNames(): string[] {
    return listDir(this.mapsDir);
  }

  /** Unpins the program of `digest` and its card; a missing pin is fine. */
  unpinModule(digest: string): void {
    unpin(this.prog(digest));
    unpin(this.card(digest));
  }

  /** Removes the cards whose program pin is gone (an interrupted install pins the card first). */
  unpinOrphanCards(): void {
    const progs = new Set(listDir(this.progsDir));
    for (const hex of listDir(this.cardsDir)) {
      if (!progs.has(hex)) unpin(join(this.cardsDir, hex));
    }
  }

  ensureDirs(): void {
    for (const d of [this.progsDir, this.cardsDir, this.mapsDir]) mkdirSync(d, { recursive: true });
  }

  /** Everything; the link is detached first, so the hook is free when this returns. */
  removeAll(): void {
    const link = BpfLink.openIfPinned(this.link);
    if (link) {
      try {
        link.detach();
        link.unpin();
      } finally {
        link.close();
      }
    }
    removeWitness(this.witness);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Attachments that have a directory under `pinRoot`; foreign entries are skipped. */
export function pinnedAttachments(pinRoot: string): Attachment[] {
  const out: Attachment[] = [];
  for (const name of listDir(pinRoot)) {
    try {
      out.push(parseAttachment(decodeURIComponent(name)));
    } catch {
      // Not one of ours: pinRoot is a plain bpffs directory anyone can write to.
    }
  }
  return out;
}

// bpffs refuses names with a dot, which interface names may have ("eth0.100").
function dirName(attachment: Attachment): string {
  return formatAttachment(attachment).replaceAll('.', '%2E');
}

function digestHex(digest: string): string {
  return digest.replace(/^sha256:/, '');
}

function listDir(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}

export function unpin(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** What a module calls itself, kept beside its pinned program. */
export interface ModuleCard {
  name: string;
  version: string;
  /** Slot names of `bpfleet_counters`, in index order. */
  counters: string[];
}

const CARD_MAP_NAME = 'bpfleet_card';

/**
 * Pins `card` at `path`, replacing what is there in one step: pinned beside it, then renamed
 * over it (bpffs renames), so a reader finds the old card or the new one, never none. A crash
 * between the two leaves `<path>-next`, an orphan card that unpinOrphanCards() removes.
 */
export function pinCard(path: string, card: ModuleCard): void {
  const value = Buffer.from(JSON.stringify({ name: card.name, version: card.version, counters: card.counters }));
  const fd = bpf.mapCreate(bpf.BPF_MAP_TYPE_ARRAY, CARD_MAP_NAME, 4, value.length, 1);
  const next = `${path}-next`;
  try {
    bpf.mapUpdate(fd, bpf.u32Key(0), value);
    bpf.mapFreeze(fd);
    unpin(next);
    bpf.objPin(fd, next);
    renameSync(next, path);
  } finally {
    bpf.closeFd(fd);
  }
}

/** Null when there is no card at `path` (a program pinned by something else than bpfleet). */
export function readCard(path: string): ModuleCard | null {
  const fd = bpf.objGetIfPinned(path);
  if (fd === null) return null;
  try {
    const value = Buffer.alloc(bpf.mapInfo(fd).valueSize);
    bpf.mapLookup(fd, bpf.u32Key(0), value);
    return JSON.parse(value.toString('utf8')) as ModuleCard;
  } finally {
    bpf.closeFd(fd);
  }
}
