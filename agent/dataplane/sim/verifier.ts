import { BpfleetError } from '../../../common/errors.js';

const DEFAULT_COMPLAINT = 'invalid access to packet, off=0 size=1, R2(id=0,off=0,r=0)\nR2 offset is outside of the packet';

/**
 * The error a kernel load returns when the verifier refuses a program, with a log shaped
 * like the kernel's so that whatever displays or parses verifier logs is exercised.
 */
export function verifierRejection(context: string, program: string, complaint = DEFAULT_COMPLAINT): BpfleetError {
  const log = [
    'func#0 @0',
    '0: R1=ctx() R10=fp0',
    `; void *data = (void *)(long)ctx->data; @ ${program}.c:9`,
    '0: (61) r2 = *(u32 *)(r1 +0)          ; R1=ctx() R2_w=pkt(r=0)',
    `; void *data_end = (void *)(long)ctx->data_end; @ ${program}.c:10`,
    '1: (61) r3 = *(u32 *)(r1 +4)          ; R1=ctx() R3_w=pkt_end()',
    `; if (*(__u8 *)data == 0x45) @ ${program}.c:12`,
    '2: (71) r1 = *(u8 *)(r2 +0)',
    complaint,
    'processed 3 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0',
  ].join('\n');
  const firstLine = complaint.split('\n', 1)[0];
  return new BpfleetError('INVALID_ARGUMENT', 'VERIFIER_REJECTED',
    `${context}: verifier rejected program ${program}: ${firstLine}`, log);
}
