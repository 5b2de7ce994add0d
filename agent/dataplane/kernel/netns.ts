import { join } from 'node:path';
import { closeFd, openNamespace, setNetns } from './libbpf.js';

/**
 * Runs synchronous work with the calling thread (only) inside another network namespace:
 * how an agent listening in the root namespace drives interfaces of a namespace. setns(2)
 * moves one thread, so the libuv pool, other threads and sockets already open stay put.
 */
export class NetnsSwitch {
  private constructor(private readonly target: number, private readonly home: number) {}

  /** `netns`: a name under /run/netns (as `ip netns add` makes) or a path to a netns file. */
  static open(netns: string): NetnsSwitch {
    const target = openNamespace(netns.includes('/') ? netns : join('/run/netns', netns));
    try {
      return new NetnsSwitch(target, openNamespace('/proc/thread-self/ns/net'));
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

  close(): void {
    closeFd(this.target);
    closeFd(this.home);
  }
}
