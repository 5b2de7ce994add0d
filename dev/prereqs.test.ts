import assert from 'node:assert/strict';
import { test } from 'node:test';
import { missingPrereqs } from './prereqs.js';

test('checks report one line per missing prerequisite, named', async () => {
  const missing = await missingPrereqs(['root', 'bpffs', 'bpf', 'etcd', 'nats', 'netns', 'clang', 'nsenter', 'python3']);
  for (const line of missing) assert.match(line, /^(root|bpffs|bpf|etcd|nats|netns|clang|nsenter|python3): \S/);
  if (missing.length > 0) process.stderr.write(`missing here:\n${missing.join('\n')}\n`);
});
