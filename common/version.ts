/**
 * What build of bpfleet this is: the package version and, when known, the git commit it was
 * built from. A built package (npm run build, infra/build.ts) has both stamped in as
 * __BPFLEET_BUILD__; run from the TypeScript sources, the version is read from package.json
 * and the commit asked of git (null outside a checkout).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface BuildInfo {
  /** package.json "version", e.g. "0.1.0". */
  version: string;
  /** Abbreviated git commit (12 hex digits, "-dirty" when the tree had changes), or null. */
  commit: string | null;
}

declare const __BPFLEET_BUILD__: BuildInfo | undefined;

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The git commit of the checkout at `dir`, as BuildInfo.commit spells it; null without git. */
export function gitCommit(dir: string): string | null {
  try {
    const run = (args: string[]) => execFileSync('git', args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const hash = run(['rev-parse', '--short=12', 'HEAD']);
    return run(['status', '--porcelain', '--untracked-files=no']) ? `${hash}-dirty` : hash;
  } catch {
    return null;
  }
}

let cached: BuildInfo | undefined;

/**
 * This build's version and commit: the one source of bpfleet's version for every command
 * (`version`), the agent's registration (Host.agent_version) and both daemons' ready log
 * line. Read once per process (from the sources it costs a file read and two git calls).
 */
export function buildInfo(): BuildInfo {
  if (typeof __BPFLEET_BUILD__ !== 'undefined') return __BPFLEET_BUILD__;
  if (!cached) {
    const pkg = JSON.parse(readFileSync(`${REPO_ROOT}package.json`, 'utf8')) as { version: string };
    cached = { version: pkg.version, commit: gitCommit(REPO_ROOT) };
  }
  return cached;
}

/** "bpfleet-agent 0.1.0 (commit 0123456789ab)": the line each command's `version` prints. */
export function versionLine(program: string, info: BuildInfo = buildInfo()): string {
  return `${program} ${info.version}${info.commit ? ` (commit ${info.commit})` : ''}`;
}
