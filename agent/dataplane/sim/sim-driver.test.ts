import { syntheticElf } from '../../../common/elf.js';
import { runDriverConformance, type DriverFixture } from '../../../e2e/support/driver-conformance.js';
import { simArtifact } from './artifacts.js';
import { SimDriver } from './sim-driver.js';

const EM_X86_64 = 62;

async function simFixture(): Promise<DriverFixture> {
  const artifacts = {
    v1: simArtifact({ name: 'pass-counter', version: '1.0.0', counters: ['packets'] }),
    v2: simArtifact({ name: 'pass-counter', version: '2.0.0', counters: ['packets', 'bytes'] }),
    notElf: simArtifact({ name: 'pass-counter', version: '9.0.0-text', object: new TextEncoder().encode('#!/bin/sh\necho hi\n') }),
    notBpfElf: simArtifact({ name: 'pass-counter', version: '9.0.0-x86', object: syntheticElf({ machine: EM_X86_64, payload: 'x86' }) }),
    wrongHook: simArtifact({ name: 'tc-counter', version: '1.0.0', hook: 'tcx-ingress' }),
    verifierReject: simArtifact({ name: 'pass-counter', version: '9.0.0-unsafe' }),
  };
  let driver = new SimDriver({
    faults: { verifierReject: (a) => a.digest === artifacts.verifierReject.digest },
  });
  const attachment = { hook: 'xdp', iface: 'eth0' } as const;
  return {
    driver,
    attachment,
    otherHookAttachment: { hook: 'tcx-ingress', iface: 'eth0' },
    artifacts,
    async reopen() {
      driver = new SimDriver({ host: driver.host, faults: driver.faults });
      return driver;
    },
    async driftTo(digest) {
      driver.driftNow(attachment, digest);
    },
    async deleteInterface() {
      driver.host.deleteInterface(attachment.iface);
    },
    async createInterface() {
      driver.host.createInterface(attachment.iface);
    },
    async cleanup() {
      await driver.close();
    },
  };
}

runDriverConformance('sim', simFixture);
