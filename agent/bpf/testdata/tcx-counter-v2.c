/* tcx-counter 2.0.0: passes every packet at a tcx hook, counts packets and bytes.
 * Uses the classic "tc" section that libbpf 1.1 maps to a sched_cls program itself. */
#include <linux/pkt_cls.h>
#include "../bpfleet.h"

SEC("tc")
int tcx_counter(struct __sk_buff *skb)
{
	bpfleet_count(0, 1);
	bpfleet_count(1, skb->len);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
