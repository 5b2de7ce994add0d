import { describe } from 'node:test';
import { runDriverConformance, type DriverFixture } from '../../../e2e/support/driver-conformance.js';
import { buildModules, createSandbox, modules } from '../../../e2e/support/kernel-sandbox.js';
import { prereqSkip } from '../../../e2e/support/prereqs.js';
import { run } from '../../../dev/processes.js';

const skip = await prereqSkip(['root', 'bpffs', 'bpf', 'netns', 'nsenter', 'clang']);
if (!skip) buildModules();

async function kernelFixture(): Promise<DriverFixture> {
  const sandbox = await createSandbox();
  try {
    const attachment = sandbox.attachment('xdp');
    const artifacts = {
      v1: modules.passV1(),
      v2: modules.passV2(),
      notElf: modules.garbage(),
      notBpfElf: modules.notBpfElf(),
      wrongHook: modules.tcxV1(),
      verifierReject: modules.verifierReject(),
    };
    let driver = sandbox.driver();
    return {
      driver,
      attachment,
      otherHookAttachment: sandbox.attachment('tcx-ingress'),
      artifacts,
      async reopen() {
        driver = sandbox.driver();
        return driver;
      },
      // Another agent process on the same pin root (a stale one, say) swapping the module.
      async driftTo(digest) {
        const other = sandbox.driver();
        const [running] = await other.observe();
        const target = Object.values(artifacts).find((a) => a.digest === digest);
        if (!target) throw new Error(`driftTo: no artifact with digest ${digest}`);
        await other.install(attachment, target, running?.digest ?? null);
        await other.close();
      },
      deleteInterface: async () => {
        await run('ip', ['-n', sandbox.host.netns, 'link', 'del', sandbox.host.iface]);
      },
      // As dev/netns.ts made it, minus the addresses: only the name matters here.
      createInterface: async () => {
        await run('ip', ['link', 'add', sandbox.host.peerIface, 'type', 'veth', 'peer', 'name', sandbox.host.iface, 'netns', sandbox.host.netns]);
        await run('ip', ['-n', sandbox.host.netns, 'link', 'set', sandbox.host.iface, 'up']);
      },
      cleanup: () => sandbox.destroy(),
    };
  } catch (err) {
    await sandbox.destroy();
    throw err;
  }
}

describe('kernel driver', { skip }, () => {
  runDriverConformance('kernel', kernelFixture);
});
