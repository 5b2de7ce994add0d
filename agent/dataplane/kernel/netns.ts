import { fstatSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { closeFd, openNamespace, setNetns } from './libbpf.js';

/**
 * Runs synchronous work with the calling thread (only) inside another network namespace:
 * how an agent listening in the root namespace drives interfaces of a namespace. setns(2)
 * moves one thread, so the libuv pool, other threads and sockets already open stay put.
 */
export class NetnsSwitch {
  private constructor(readonly path: string, private readonly target: number, private readonly home: number) {}

  /** `netns`: a name under /run/netns (as `ip netns add` makes) or a path to a netns file. */
  static open(netns: string): NetnsSwitch {
    const path = netns.includes('/') ? netns : join('/run/netns', netns);
    const target = openNamespace(path);
    try {
      return new NetnsSwitch(path, target, openNamespace('/proc/thread-self/ns/net'));
    } catch (err) {
      closeFd(target);
      throw err;
    }
  }

  /**
   * `fn` must be synchronous: anything it leaves for later (a promise, a callback) would run
   * back in the home namespace, and an await inside would let unrelated work run in this one.
   */
  run<T>(fn: () => T): T {
    setNetns(this.target);
    try {
      return fn();
    } finally {
      setNetns(this.home);
    }
  }

  /**
   * Null while `path` still names the namespace this switch entered; otherwise why not. The
   * switch's own fd keeps a deleted namespace (and its interfaces) alive, unreachable by
   * anyone else, so the kernel alone cannot tell: the path is compared by inode.
   */
  gone(): string | null {
    let now;
    try {
      now = statSync(this.path);
    } catch (err) {
      return `network namespace ${this.path} is gone (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
    }
    const held = fstatSync(this.target);
    if (now.ino !== held.ino || now.dev !== held.dev) return `network namespace ${this.path} was deleted and created again`;
    return null;
  }

  close(): void {
    closeFd(this.target);
    closeFd(this.home);
  }
}
