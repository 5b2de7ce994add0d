/**
 * The TypeScript in proto/gen is generated (npm run gen:proto) and committed. This fails
 * when a .proto changed without regenerating, or when someone edited the generated code.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const BUF = join(REPO, 'node_modules/.bin/buf');

function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

test('generated code in proto/gen matches the .proto files', (t) => {
  const out = mkdtempSync(join(tmpdir(), 'bpfleet-gen-'));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  execFileSync(BUF, ['generate', '-o', out], { cwd: REPO, stdio: 'pipe' });
  const fresh = join(out, 'proto/gen');
  const committed = join(REPO, 'proto/gen');
  assert.deepEqual(files(committed), files(fresh), 'generated file list differs: run npm run gen:proto');
  for (const f of files(fresh)) {
    assert.equal(readFileSync(join(committed, f), 'utf8'), readFileSync(join(fresh, f), 'utf8'), `proto/gen/${f} is stale: run npm run gen:proto`);
  }
});

test('proto/descriptors.binpb (what server reflection serves) matches the .proto files', (t) => {
  const out = mkdtempSync(join(tmpdir(), 'bpfleet-desc-'));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  execFileSync(BUF, ['build', '-o', join(out, 'descriptors.binpb'), '--as-file-descriptor-set'], { cwd: REPO, stdio: 'pipe' });
  assert.ok(readFileSync(join(out, 'descriptors.binpb')).equals(readFileSync(join(REPO, 'proto/descriptors.binpb'))),
    'proto/descriptors.binpb is stale: run npm run gen:proto');
});

test('the .proto files pass buf lint', () => {
  execFileSync(BUF, ['lint'], { cwd: REPO, stdio: 'pipe' });
});
