import { HookKind } from '../proto/gen/bpfleet/v1/module.js';
import { BpfleetError } from './errors.js';
import { echo } from './limits.js';

/** The hook names users write in specs and attachments ("xdp:eth0"). */
export const HOOK_NAMES = ['xdp', 'tcx-ingress', 'tcx-egress'] as const;
export type HookName = (typeof HOOK_NAMES)[number];

/** Where a module runs on a host. */
export interface Attachment {
  hook: HookName;
  iface: string;
}

const HOOK_TO_KIND: Record<HookName, HookKind> = {
  xdp: HookKind.HOOK_KIND_XDP,
  'tcx-ingress': HookKind.HOOK_KIND_TCX_INGRESS,
  'tcx-egress': HookKind.HOOK_KIND_TCX_EGRESS,
};

// Linux IFNAMSIZ is 16 including the NUL.
const IFACE_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;

export function parseAttachment(text: string): Attachment {
  const i = text.indexOf(':');
  const hook = text.slice(0, i) as HookName;
  const iface = text.slice(i + 1);
  if (i < 0 || !HOOK_NAMES.includes(hook)) {
    throw new BpfleetError('INVALID_ARGUMENT', 'BAD_ATTACHMENT',
      `attachment ${echo(text)}: expected <hook>:<interface> with hook one of ${HOOK_NAMES.join(', ')}`);
  }
  if (!IFACE_RE.test(iface)) {
    throw new BpfleetError('INVALID_ARGUMENT', 'BAD_ATTACHMENT', `attachment ${echo(text)}: ${echo(iface)} is not a valid interface name`);
  }
  return { hook, iface };
}

export function formatAttachment(a: Attachment): string {
  return `${a.hook}:${a.iface}`;
}

export function hookKind(hook: HookName): HookKind {
  return HOOK_TO_KIND[hook];
}

export function hookName(kind: HookKind): HookName {
  const found = HOOK_NAMES.find((h) => HOOK_TO_KIND[h] === kind);
  if (!found) throw new BpfleetError('INVALID_ARGUMENT', 'BAD_HOOK', `unknown hook kind ${kind}`);
  return found;
}
