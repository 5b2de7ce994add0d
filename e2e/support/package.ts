/**
 * A built bpfleet package for upgrade tests: dist/ (infra/build.ts) stamped with another
 * version, laid out as `npm install` lays the package out, with no TypeScript sources, so
 * dev/programs.ts runs its dist/ on plain Node.
 */
import { copyFileSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from '../../dev/fleet.js';
import { buildInfo } from '../../common/version.js';
import { buildDist } from '../../infra/build.js';

/**
 * Builds the package into `dir` (created) with `version`: dist/, the descriptor set the gRPC
 * reflection reads at start, and the dependencies (a link to the checkout's node_modules).
 */
export async function buildPackage(dir: string, version: string): Promise<void> {
  await buildDist(join(dir, 'dist'), { version, commit: buildInfo().commit });
  mkdirSync(join(dir, 'proto'));
  copyFileSync(join(REPO, 'proto/descriptors.binpb'), join(dir, 'proto/descriptors.binpb'));
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
}
