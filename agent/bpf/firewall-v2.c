/* firewall 2.0.0: the same rule as 1.0.0; new in 2.0.0, it also counts what it passes, so
 * the share of blocked traffic is visible. */
#include <linux/pkt_cls.h>
#include "bpfleet.h"
#include "firewall.h"

/* tcx: hand the packet to the next program of the chain (the 6.1 uapi lacks TCX_NEXT). */
#define FIREWALL_TCX_NEXT -1

enum { DROPPED, PASSED };

SEC("xdp")
int firewall_xdp(struct xdp_md *ctx)
{
	if (!firewall_blocks((void *)(long)ctx->data, (void *)(long)ctx->data_end)) {
		bpfleet_count(PASSED, 1);
		return XDP_PASS;
	}
	bpfleet_count(DROPPED, 1);
	return XDP_DROP;
}

SEC("tc")
int firewall_tc(struct __sk_buff *skb)
{
	if (!firewall_blocks((void *)(long)skb->data, (void *)(long)skb->data_end)) {
		bpfleet_count(PASSED, 1);
		return FIREWALL_TCX_NEXT;
	}
	bpfleet_count(DROPPED, 1);
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
