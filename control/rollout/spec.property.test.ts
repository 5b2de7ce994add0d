/**
 * Property tests of the rollout spec parser (issue 11, "bad input at every boundary"):
 * thousands of generated specs, near-valid and junk, as objects and as YAML text. Each
 * either parses — and then survives the API's re-check (checkRolloutSpec) unchanged — or is
 * refused with INVALID_ARGUMENT whose message names a field; never another error, never a hang.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { BpfleetError } from '../../common/errors.js';
import { checkRolloutSpec, parseRolloutSpec, toRolloutSpec } from './spec.js';

const junk = fc.oneof(fc.string(), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.array(fc.string(), { maxLength: 3 }), fc.object({ maxDepth: 1 }));
const orJunk = <T>(arb: fc.Arbitrary<T>) => fc.oneof({ weight: 4, arbitrary: arb }, { weight: 1, arbitrary: junk });
const duration = fc.oneof(
  fc.tuple(fc.nat({ max: 200_000 }), fc.constantFrom('ms', 's', 'm', 'h')).map(([n, u]) => `${n}${u}`),
  fc.string({ maxLength: 12 }),
);
const step = fc.oneof(
  fc.record({ canary: orJunk(fc.integer({ min: -2, max: 2_000_000 })) }),
  fc.record({ percent: orJunk(fc.double({ min: -10, max: 200, noNaN: false })) }),
  fc.record({ bake: orJunk(duration) }),
  fc.record({ pause: orJunk(fc.constant({})) }),
  fc.object({ maxDepth: 1, maxKeys: 2 }),
);
const metric = fc.record({
  name: orJunk(fc.constantFrom('drop_rate', 'latency')),
  max: orJunk(fc.double({ min: -1, max: 1e13 })),
  maxIncrease: orJunk(fc.double({ min: -1, max: 2 })),
}, { requiredKeys: ['name'] });
/** Specs within every bound, so that the accepting side is exercised too. */
const validSpec = fc.record({
  module: fc.constantFrom('pass-counter', 'm'),
  version: fc.constantFrom('1.0.0', '2.0.0-rc.1'),
  attachment: fc.constantFrom('xdp:eth0', 'tcx-egress:veth1'),
  steps: fc.array(fc.oneof(
    fc.record({ canary: fc.integer({ min: 1, max: 1000 }) }),
    fc.record({ percent: fc.integer({ min: 1, max: 100 }) }),
    fc.record({ bake: fc.tuple(fc.integer({ min: 0, max: 600 }), fc.constantFrom('ms', 's', 'm')).map(([n, u]) => `${n}${u}`) }),
    fc.constant({ pause: {} }),
  ), { minLength: 1, maxLength: 10 }),
  analysis: fc.record({
    interval: fc.integer({ min: 100, max: 60_000 }).map((n) => `${n}ms`),
    minSamples: fc.integer({ min: 1, max: 1000 }),
    inconclusiveLimit: fc.integer({ min: 0, max: 1000 }),
    failureLimit: fc.integer({ min: 0, max: 1000 }),
    metrics: fc.array(fc.record({ name: fc.constant('drop_rate'), max: fc.double({ min: 0.001, max: 1, noNaN: true }) }), { minLength: 1, maxLength: 3 }),
  }, { requiredKeys: [] }),
  onFailure: fc.constantFrom('rollback', 'halt'),
}, { requiredKeys: ['module', 'version', 'attachment', 'steps'] });

const anySpec = fc.record({
  module: orJunk(fc.oneof(fc.constantFrom('pass-counter', ''), fc.string({ maxLength: 80 }))),
  version: orJunk(fc.oneof(fc.constantFrom('1.0.0'), fc.string({ maxLength: 80 }))),
  attachment: orJunk(fc.oneof(fc.constantFrom('xdp:eth0', 'tcx-ingress:veth1', 'xdp:', ':eth0'), fc.string({ maxLength: 40 }))),
  selector: orJunk(fc.dictionary(fc.string({ maxLength: 70 }), fc.string({ maxLength: 10 }), { maxKeys: 40 })),
  steps: orJunk(fc.array(step, { maxLength: 70 })),
  maxUnavailable: orJunk(fc.oneof(fc.integer({ min: -1, max: 2_000_000 }), fc.constantFrom('25%', '0%', '101%', '1', 'x'))),
  analysis: orJunk(fc.record({
    interval: orJunk(duration),
    minSamples: orJunk(fc.integer({ min: -1, max: 2000 })),
    inconclusiveLimit: orJunk(fc.integer({ min: -1, max: 2000 })),
    failureLimit: orJunk(fc.integer({ min: -1, max: 2000 })),
    staleAfter: orJunk(duration),
    metrics: orJunk(fc.array(metric, { maxLength: 20 })),
  }, { requiredKeys: [] })),
  onFailure: orJunk(fc.constantFrom('rollback', 'halt')),
}, { requiredKeys: [] });
const spec = fc.oneof(validSpec, anySpec);

/** Either a field-named INVALID_SPEC refusal or nothing thrown. */
function refusedWell(err: unknown): void {
  assert.ok(err instanceof BpfleetError, `not a BpfleetError: ${String(err)}`);
  assert.equal(err.code, 'INVALID_ARGUMENT');
  // NO_BASELINE: a bake left with no baseline hosts and no absolute limit (issue 11, kind 5).
  assert.match(err.reason, /^(INVALID_SPEC|NO_BASELINE)$/);
  // "invalid rollout spec:\n  <field>: <why>" or "rollout spec is not valid YAML: ..."
  const field = String.raw`(\(spec\)|[A-Za-z_][\w-]*|\["(?:[^"\\]|\\.)*"\])(\.[A-Za-z_][\w-]*|\[\d+\]|\["(?:[^"\\]|\\.)*"\])*`;
  const shape = new RegExp(String.raw`^invalid rollout spec:(\n {2}${field}: .+)+$|^invalid rollout spec: missing$|^rollout spec is not valid YAML: `, 's');
  assert.match(err.message, shape);
  assert.ok(err.message.length < 8192, 'the message is short');
}

test('a generated spec object parses and survives the API re-check, or is refused naming a field', () => {
  let parsed = 0;
  fc.assert(fc.property(spec, (input) => {
    let wire;
    try {
      wire = toRolloutSpec(input);
    } catch (err) {
      refusedWell(err);
      return;
    }
    parsed++;
    assert.deepEqual(checkRolloutSpec(wire), wire, 'what the parser accepts, the API accepts unchanged');
  }), { numRuns: 2000 });
  assert.ok(parsed > 0, 'some generated specs are valid');
});

test('generated YAML text parses or is refused naming a field', () => {
  const text = fc.oneof(
    fc.string({ maxLength: 200 }),
    spec.map((s) => JSON.stringify(s)),
    spec.map((s) => Object.entries(s).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join('\n')),
  );
  fc.assert(fc.property(text, (t) => {
    try {
      parseRolloutSpec(t);
    } catch (err) {
      refusedWell(err);
    }
  }), { numRuns: 2000 });
});
