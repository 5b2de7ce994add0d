import { release } from 'node:os';
import type { HookName } from '../../../common/attachment.js';
import * as bpf from './libbpf.js';

/** Why a hook is missing, in the words an operator needs ("tcx needs kernel 6.6"). */
export interface HookSupport {
  supported: boolean;
  reason: string;
}

// Kernel features do not change while the process runs: probe each once.
const cache = new Map<'xdp' | 'tcx', HookSupport>();

export function hookSupport(hook: HookName): HookSupport {
  const kind = hook === 'xdp' ? 'xdp' : 'tcx';
  let support = cache.get(kind);
  if (!support) {
    support = kind === 'xdp' ? probeXdp() : probeTcx();
    cache.set(kind, support);
  }
  return support;
}

// XDP links date from 5.9 and every kernel with tcx has them: loading an XDP program is
// the part that can still fail (no bpf() permission, BPF turned off).
function probeXdp(): HookSupport {
  try {
    bpf.closeFd(bpf.loadTrivialProgram(bpf.BPF_PROG_TYPE_XDP));
    return { supported: true, reason: '' };
  } catch (err) {
    return { supported: false, reason: `xdp programs cannot be loaded: ${(err as Error).message}` };
  }
}

// A tcx link on ifindex 0 can never attach, but how it fails tells whether the kernel knows
// the attach type: ENODEV (looked for the device) on 6.6+, EINVAL before. Nothing attaches.
function probeTcx(): HookSupport {
  let fd: number;
  try {
    fd = bpf.loadTrivialProgram(bpf.BPF_PROG_TYPE_SCHED_CLS);
  } catch (err) {
    return { supported: false, reason: `sched_cls programs cannot be loaded: ${(err as Error).message}` };
  }
  try {
    bpf.linkCreate(fd, 0, bpf.BPF_TCX_INGRESS);
  } catch (err) {
    if (err instanceof bpf.SysError && err.code === 'ENODEV') return { supported: true, reason: '' };
    if (err instanceof bpf.SysError && err.code === 'EINVAL') {
      return { supported: false, reason: `tcx needs kernel 6.6 (this is ${release()})` };
    }
    return { supported: false, reason: `tcx probe failed: ${(err as Error).message}` };
  } finally {
    bpf.closeFd(fd);
  }
  return { supported: false, reason: 'tcx probe attached to ifindex 0, which no kernel should allow' };
}
