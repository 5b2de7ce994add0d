/**
 * The layering of docs/ARCHITECTURE.md, checked on the import graph of the whole tree:
 * `bench | e2e | infra | dev → control | agent → common → proto`, no cycle, and production
 * code never reaches into tests.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TOP = ['proto', 'common', 'control', 'agent', 'dev', 'e2e', 'infra', 'bench'];
// Static imports, re-exports, side-effect imports and dynamic imports.
const IMPORT_RE = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+'([^']+)'|(?:^|\n)\s*import\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/g;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    if (e.name === 'node_modules' || e.name.startsWith('.')) return [];
    const path = join(dir, e.name);
    return e.isDirectory() ? sources(path) : e.name.endsWith('.ts') ? [path] : [];
  });
}

const isTest = (file: string): boolean => file.endsWith('.test.ts') || file.startsWith('e2e/') || file.startsWith('bench/');

/** file (repo-relative) → the repo-relative files and the bare modules it imports. */
function importGraph(): Map<string, { files: string[]; modules: string[] }> {
  const graph = new Map<string, { files: string[]; modules: string[] }>();
  for (const top of TOP) {
    for (const abs of sources(join(REPO, top))) {
      const file = relative(REPO, abs);
      const files: string[] = [];
      const modules: string[] = [];
      for (const m of readFileSync(abs, 'utf8').matchAll(IMPORT_RE)) {
        const spec = m[1] ?? m[2] ?? m[3]!;
        if (spec.startsWith('.')) files.push(relative(REPO, resolve(dirname(abs), spec)).replace(/\.js$/, '.ts'));
        else modules.push(spec);
      }
      graph.set(file, { files, modules });
    }
  }
  return graph;
}

const layer = (file: string): string => file.split('/')[0]!;

// What each production layer may import from the tree.
const ALLOWED: Record<string, readonly string[]> = {
  proto: ['proto'],
  common: ['common', 'proto'],
  control: ['control', 'common', 'proto'],
  agent: ['agent', 'common', 'proto'],
  dev: ['dev', 'control', 'agent', 'common', 'proto'],
  infra: ['infra', 'dev', 'control', 'agent', 'common', 'proto'],
};

describe('layering', () => {
  const graph = importGraph();

  it('reads the whole tree', () => {
    assert.ok(graph.size > 100, `only ${graph.size} files found`);
    assert.ok(graph.get('control/controller.ts')?.files.includes('control/rollout/reconcile.ts'));
  });

  it('production code imports only its own layer and the layers below it', () => {
    const wrong: string[] = [];
    for (const [file, { files }] of graph) {
      if (isTest(file)) continue;
      for (const to of files) if (!ALLOWED[layer(file)]!.includes(layer(to))) wrong.push(`${file} → ${to}`);
    }
    assert.deepEqual(wrong, []);
  });

  it('production code never imports a test, a fixture of tests, or node:test', () => {
    const wrong: string[] = [];
    for (const [file, { files, modules }] of graph) {
      if (isTest(file)) continue;
      for (const to of files) if (isTest(to)) wrong.push(`${file} → ${to}`);
      if (modules.includes('node:test')) wrong.push(`${file} → node:test`);
    }
    assert.deepEqual(wrong, []);
  });

  it('has no import cycle', () => {
    const state = new Map<string, 'open' | 'done'>();
    const cycles: string[] = [];
    const visit = (file: string, path: string[]): void => {
      if (state.get(file) === 'done') return;
      if (state.get(file) === 'open') {
        cycles.push([...path.slice(path.indexOf(file)), file].join(' → '));
        return;
      }
      state.set(file, 'open');
      for (const to of graph.get(file)?.files ?? []) visit(to, [...path, file]);
      state.set(file, 'done');
    };
    for (const file of graph.keys()) visit(file, []);
    assert.deepEqual(cycles, []);
  });
});
