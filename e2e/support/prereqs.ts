/**
 * Integration tests and missing prerequisites (dev/prereqs.ts checks them). Locally a missing
 * piece skips the test with a line saying what to install; under CI=true it fails the test,
 * because CI that silently skips its real-kernel tests proves nothing.
 */
import { missingPrereqs, type Prereq } from '../../dev/prereqs.js';

/** The part of a node:test context this needs. */
export interface Skippable {
  skip(message?: string): void;
}

/**
 * Given what is missing: true when nothing is; otherwise skips `t` and returns false, or under
 * CI=true throws so that the test fails.
 */
export function skipOrFail(t: Skippable, missing: readonly string[]): boolean {
  if (missing.length === 0) return true;
  const message = `missing: ${missing.join('; ')}`;
  if (process.env.CI === 'true') throw new Error(`${message} (CI=true: a missing prerequisite is a failure)`);
  t.skip(message);
  return false;
}

/**
 * For the top of a test: `if (!(await requirePrereqs(t, ['root', 'netns']))) return;`.
 * node:test's t.skip() only marks the test, so the test must return itself.
 */
export async function requirePrereqs(t: Skippable, names: readonly Prereq[]): Promise<boolean> {
  return skipOrFail(t, await missingPrereqs(names));
}

/**
 * For a test's or suite's options: `describe('x', { skip: await prereqSkip(['etcd']) }, ...)`.
 * Resolves to false when all are met, else to the skip message; under CI=true rejects instead.
 */
export async function prereqSkip(names: readonly Prereq[]): Promise<string | false> {
  let message: string | false = false;
  skipOrFail({ skip: (m) => (message = m ?? 'missing prerequisites') }, await missingPrereqs(names));
  return message;
}
