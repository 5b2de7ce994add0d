/**
 * The firewall module the dataplane benchmarks swap: both versions, on both hooks its
 * manifest names, drop exactly the blocked port's traffic and let the rest reach the
 * namespace's stack; 2.0.0 also counts what it passes. Real kernel, installed through the
 * kernel driver; the stack's own counter is the witness of what got through.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { HookName } from '../../common/attachment.js';
import type { KernelDriver } from '../../agent/dataplane/kernel/kernel-driver.js';
import { startTraffic } from '../../dev/traffic.js';
import { ipInReceives } from '../../e2e/support/bpftool.js';
import { buildModules, createSandbox, type Sandbox } from '../../e2e/support/kernel-sandbox.js';
import { prereqSkip } from '../../e2e/support/prereqs.js';
import { BLOCKED_UDP_PORT, firewallModule } from './firewall.js';

const skip = await prereqSkip(['root', 'bpffs', 'bpf', 'netns', 'nsenter', 'clang']);
if (!skip) buildModules();

const OPEN_UDP_PORT = BLOCKED_UDP_PORT - 1;

describe('firewall module (agent/bpf/firewall-v1, -v2)', { skip }, () => {
  let sb: Sandbox;
  let driver: KernelDriver;
  before(async () => {
    sb = await createSandbox();
    driver = sb.driver();
  });
  after(() => sb?.destroy());

  /** Sends to the blocked and the open port at once; returns what each send counted and what arrived. */
  async function exchange(hook: HookName): Promise<{ blocked: number; open: number; stack: number; counters: Record<string, bigint> }> {
    const attachment = sb.attachment(hook);
    const countersBefore = (await driver.stats(attachment))!.counters;
    const stackBefore = await ipInReceives(sb.host.netns);
    const target = sb.host.hostAddr;
    const [blocked, open] = await Promise.all([BLOCKED_UDP_PORT, OPEN_UDP_PORT].map((port) =>
      startTraffic({ target, port, pps: 2_000, durationMs: 300 }).done));
    await sleep(200);
    const stack = (await ipInReceives(sb.host.netns)) - stackBefore;
    const countersAfter = (await driver.stats(attachment))!.counters;
    const counters = Object.fromEntries(Object.entries(countersAfter).map(([k, v]) => [k, v - (countersBefore[k] ?? 0n)]));
    return { blocked: blocked!, open: open!, stack, counters };
  }

  for (const hook of ['xdp', 'tcx-ingress'] as const) {
    it(`on ${hook}: 1.0.0 drops only the blocked port; 2.0.0, swapped in, does the same and counts what it passes`, async () => {
      const [v1, v2] = [firewallModule('v1'), firewallModule('v2')];
      await driver.install(sb.attachment(hook), v1, null);
      const one = await exchange(hook);
      assert.ok(one.blocked > 0 && one.open > 0, 'traffic was sent');
      assert.equal(one.stack, one.open, 'only the open port reached the stack');
      assert.deepEqual(one.counters, { dropped: BigInt(one.blocked) });

      await driver.install(sb.attachment(hook), v2, v1.digest);
      const two = await exchange(hook);
      assert.equal(two.stack, two.open, 'only the open port reached the stack');
      assert.deepEqual(two.counters, { dropped: BigInt(two.blocked), passed: BigInt(two.open) });
      await driver.remove(sb.attachment(hook));
    });
  }
});
