import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HookKind } from '../proto/gen/bpfleet/v1/module.js';
import { formatAttachment, HOOK_NAMES, hookKind, hookName, parseAttachment } from './attachment.js';
import { BpfleetError } from './errors.js';

const isBadAttachment = (pattern: RegExp) => (err: unknown) =>
  err instanceof BpfleetError && err.code === 'INVALID_ARGUMENT' && err.reason === 'BAD_ATTACHMENT' && pattern.test(err.message);

describe('parseAttachment', () => {
  it('splits hook and interface', () => {
    assert.deepEqual(parseAttachment('xdp:eth0'), { hook: 'xdp', iface: 'eth0' });
    assert.deepEqual(parseAttachment('tcx-ingress:veth-a.1_b'), { hook: 'tcx-ingress', iface: 'veth-a.1_b' });
    assert.deepEqual(parseAttachment('tcx-egress:bond0'), { hook: 'tcx-egress', iface: 'bond0' });
  });

  it('round-trips through formatAttachment', () => {
    for (const text of ['xdp:eth0', 'tcx-egress:enp3s0f1', 'tcx-ingress:a']) assert.equal(formatAttachment(parseAttachment(text)), text);
  });

  it('refuses unknown hooks and a missing colon, listing the hooks it knows', () => {
    assert.throws(() => parseAttachment('eth0'), isBadAttachment(/"eth0": expected <hook>:<interface> with hook one of xdp, tcx-ingress, tcx-egress/));
    assert.throws(() => parseAttachment('kprobe:eth0'), isBadAttachment(/"kprobe:eth0"/));
    assert.throws(() => parseAttachment('XDP:eth0'), isBadAttachment(/expected <hook>/));
    assert.throws(() => parseAttachment(''), isBadAttachment(/expected <hook>/));
  });

  it('refuses interface names Linux would refuse: empty, over 15 bytes, with / or spaces', () => {
    assert.doesNotThrow(() => parseAttachment(`xdp:${'a'.repeat(15)}`));
    for (const bad of ['xdp:', `xdp:${'a'.repeat(16)}`, 'xdp:eth/0', 'xdp:eth 0', 'xdp:-eth0', 'xdp:eth0:1']) {
      assert.throws(() => parseAttachment(bad), isBadAttachment(/is not a valid interface name/), bad);
    }
  });
});

describe('hookKind / hookName', () => {
  it('map every hook name to a distinct wire kind and back', () => {
    const kinds = HOOK_NAMES.map(hookKind);
    assert.equal(new Set(kinds).size, HOOK_NAMES.length);
    assert.ok(!kinds.includes(HookKind.HOOK_KIND_UNSPECIFIED));
    for (const name of HOOK_NAMES) assert.equal(hookName(hookKind(name)), name);
    assert.equal(hookKind('xdp'), HookKind.HOOK_KIND_XDP);
  });

  it('refuses a kind with no name', () => {
    assert.throws(() => hookName(HookKind.HOOK_KIND_UNSPECIFIED), (err: unknown) => err instanceof BpfleetError && err.reason === 'BAD_HOOK');
  });
});
