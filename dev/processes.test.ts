import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { procRef } from './claims.js';
import { CleanupStack } from './cleanup.js';
import { CommandError, findExecutable, run, runningProcesses, spawnManaged, stopAll } from './processes.js';

const cleanup = new CleanupStack();
after(() => cleanup.runAll());

test('captures output in a log file and waits for a line', async () => {
  const p = spawnManaged({ name: 'echoer', command: 'sh', args: ['-c', 'echo starting; echo "listening on 4242" >&2; sleep 300'] });
  cleanup.defer(() => p.stop(), 'stop echoer');
  const [, port] = await p.waitForLine(/^listening on (\d+)$/);
  assert.equal(port, '4242');
  assert.ok(p.running);
  assert.ok(runningProcesses().includes(p));
  const status = await p.stop();
  assert.equal(status.signal, 'SIGTERM');
  assert.equal(p.running, false);
  assert.ok(!runningProcesses().includes(p));
  // stdout and stderr are separate pipes: their relative order is not guaranteed.
  assert.deepEqual(readFileSync(p.logFile, 'utf8').split('\n').sort(), ['', 'listening on 4242', 'starting']);
});

test('stop() kills the whole process group, grandchildren included', async () => {
  const p = spawnManaged({ name: 'parent', command: 'sh', args: ['-c', 'sleep 300 & echo "child $!"; wait'] });
  cleanup.defer(() => p.stop(), 'stop parent');
  const [, pid] = await p.waitForLine(/^child (\d+)$/);
  assert.ok(procRef(Number(pid)));
  await p.stop();
  for (let i = 0; i < 20 && procRef(Number(pid)); i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(procRef(Number(pid)), undefined, 'grandchild survived');
});

test('a process that ignores SIGTERM is killed after the grace period', async () => {
  const p = spawnManaged({ name: 'stubborn', command: 'sh', args: ['-c', "trap '' TERM; echo ready; while :; do sleep 0.1; done"] });
  cleanup.defer(() => p.kill(), 'kill stubborn');
  await p.waitForLine(/^ready$/);
  assert.equal((await p.stop({ graceMs: 200 })).signal, 'SIGKILL');
});

test('waitForLine fails with the output when the process exits first, or on timeout', async () => {
  const p = spawnManaged({ name: 'quitter', command: 'sh', args: ['-c', 'echo "fatal: no config"; exit 3'] });
  await assert.rejects(p.waitForLine(/^ready$/), /before exit of quitter .*code 3[\s\S]*fatal: no config/);
  assert.equal((await p.exited).code, 3);

  const q = spawnManaged({ name: 'silent', command: 'sleep', args: ['300'] });
  cleanup.defer(() => q.stop(), 'stop silent');
  await assert.rejects(q.waitForLine(/never/, 100), /within 100 ms/);
  await stopAll();
  assert.equal(q.running, false);
});

test('spawn of a missing program throws', () => {
  assert.throws(() => spawnManaged({ name: 'nothing', command: '/nonexistent/program' }), /cannot run/);
});

test('run() returns output and throws CommandError with stderr', async () => {
  assert.equal((await run('sh', ['-c', 'echo out'])).stdout, 'out\n');
  await assert.rejects(run('sh', ['-c', 'echo bad >&2; exit 2']), (err: unknown) => {
    assert.ok(err instanceof CommandError);
    assert.equal(err.code, 2);
    assert.equal(err.stderr, 'bad\n');
    return true;
  });
  assert.ok(findExecutable('sh'));
  assert.equal(findExecutable('no-such-program-here'), undefined);
});
