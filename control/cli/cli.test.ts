import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BpfleetError, fromServiceError, toServiceError, type ErrorCode } from '../../common/errors.js';
import { RolloutPhase } from '../../proto/gen/bpfleet/v1/rollout.js';
import { buildCli, invokedNoun, NOUNS } from './cli.js';
import { EXIT } from './exit-codes.js';
import { exitCodeFor, exitCodeForError } from './exit-for.js';

// The numbers themselves are the contract (README "Exit codes", `bpfleet --help`): pipelines
// gate on them, so they are spelled out here rather than read back from EXIT.
describe('exitCodeFor', () => {
  const cases: [RolloutPhase | undefined, number][] = [
    [RolloutPhase.ROLLOUT_PHASE_SUCCEEDED, 0],
    [RolloutPhase.ROLLOUT_PHASE_ROLLED_BACK, 3],
    [RolloutPhase.ROLLOUT_PHASE_FAILED, 4],
    [RolloutPhase.ROLLOUT_PHASE_ABORTED, 4],
    [RolloutPhase.ROLLOUT_PHASE_PAUSED, 6],
    // A watch that ended before the rollout did is not a success.
    [RolloutPhase.ROLLOUT_PHASE_PROGRESSING, 4],
    [RolloutPhase.ROLLOUT_PHASE_ROLLING_BACK, 4],
    [undefined, 4],
  ];
  for (const [phase, code] of cases) {
    it(`${phase ?? 'no phase'} → ${code}`, () => assert.equal(exitCodeFor(phase), code));
  }
});

describe('exitCodeForError', () => {
  const cases: [ErrorCode, number][] = [
    ['INVALID_ARGUMENT', 2],
    ['ALREADY_EXISTS', 2],
    ['FAILED_PRECONDITION', 2],
    ['NOT_FOUND', 7],
    ['UNAVAILABLE', 1],
    ['DEADLINE_EXCEEDED', 1],
    ['PERMISSION_DENIED', 1],
    ['INTERNAL', 1],
  ];
  for (const [code, exit] of cases) {
    it(`${code} → ${exit}`, () => assert.equal(exitCodeForError(new BpfleetError(code, 'INTERNAL', 'm')), exit));
  }

  it('an error that is not a BpfleetError is a plain error (1)', () => {
    assert.equal(exitCodeForError(new Error('boom')), 1);
    assert.equal(exitCodeForError('boom'), 1);
  });

  it('a server error keeps its exit code across the wire', () => {
    const wire = fromServiceError(toServiceError(new BpfleetError('NOT_FOUND', 'ROLLOUT_NOT_FOUND', 'no rollout r-1')));
    assert.equal(exitCodeForError(wire), 7);
  });
});

describe('lazy nouns', () => {
  it('finds the noun past global options and in `help <noun>`', () => {
    const argv = (...a: string[]) => ['node', 'bpfleet', ...a];
    assert.equal(invokedNoun(argv('-s', '127.0.0.1:1', 'rollout', 'get', 'r-1')), 'rollout');
    assert.equal(invokedNoun(argv('--server', 'hosts', 'module', 'list')), 'module');
    assert.equal(invokedNoun(argv('--tls-ca', 'hosts', '--tls-cert', 'module', '--tls-key', 'pki', '--context', 'keys', 'rollout', 'list')), 'rollout');
    assert.equal(invokedNoun(argv('--insecure', 'hosts')), 'hosts');
    assert.equal(invokedNoun(argv('help', 'pki')), 'pki');
    assert.equal(invokedNoun(argv('--help')), null);
    assert.equal(invokedNoun(argv('version')), null);
    assert.equal(invokedNoun(argv('constructor')), null);
  });

  // The overview lists the lazy entries: it must read exactly as with every noun loaded.
  it('the overview help is the same with no noun loaded as with all of them', async () => {
    const lazy = await buildCli([]);
    const full = await buildCli('all');
    assert.equal(lazy.helpInformation(), full.helpInformation());
    assert.deepEqual(full.commands.map((c) => c.name()).sort(), [...Object.keys(NOUNS), 'dev', 'version'].sort());
    assert.match(lazy.helpInformation(), /^ {2}dev +a local fleet on this machine/m);
  });
});

describe('EXIT', () => {
  it('a verb recorded but not applied exits 8', () => assert.equal(EXIT.NOT_APPLIED, 8));
});
