/**
 * A pin root on the bpffs (/sys/fs/bpf/bpfleet-<name>) for each fleet host and test, so their
 * pinned links and maps never mix with the agent's default /sys/fs/bpf/bpfleet or each other's.
 */
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { claim, release } from './claims.js';
import { onExit } from './cleanup.js';

export const BPFFS = '/sys/fs/bpf';
/** Every pin root created here starts with this; sweepStale() removes the orphaned ones. */
export const PIN_ROOT_PREFIX = 'bpfleet-';

const NAME_RE = /^[a-z0-9][a-z0-9-]{0,47}$/;

export interface PinRoot {
  name: string;
  /** /sys/fs/bpf/bpfleet-<name> */
  path: string;
  /** Unpins everything below it (pinned links detach once no fd holds them) and removes it. */
  destroy(): Promise<void>;
}

export function bpffsMounted(): boolean {
  return readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === BPFFS && l.split(' ')[2] === 'bpf');
}

export async function createPinRoot(name: string): Promise<PinRoot> {
  if (!NAME_RE.test(name)) throw new Error(`pin root "${name}": use lowercase letters, digits and dashes`);
  if (!bpffsMounted()) throw new Error(`bpffs is not mounted at ${BPFFS}: mount -t bpf bpf ${BPFFS} (infra/bootstrap.sh does)`);
  const dirName = `${PIN_ROOT_PREFIX}${name}`;
  const path = join(BPFFS, dirName);
  claim('pin', dirName);
  // A dead run's pins under the same name are not ours to keep.
  rmSync(path, { recursive: true, force: true });
  mkdirSync(path);
  const remove = (): void => {
    rmSync(path, { recursive: true, force: true });
    release('pin', dirName);
  };
  const unregister = onExit(`remove ${path}`, remove);
  return {
    name,
    path,
    destroy: async () => {
      remove();
      unregister();
    },
  };
}
