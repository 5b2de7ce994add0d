/* tcx-counter 1.0.0: passes every packet at a tcx hook and counts it.
 * "tcx/ingress" is the section newer libbpf names tcx programs by; libbpf 1.1 does not know
 * it, so the agent sets the program type from the manifest's hook. */
#include <linux/pkt_cls.h>
#include "../bpfleet.h"

SEC("tcx/ingress")
int tcx_counter(struct __sk_buff *skb)
{
	bpfleet_count(0, 1);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
