/* firewall 1.0.0: drops IPv4 UDP to port 9999 and passes everything else, at XDP or at
 * tcx ingress (the manifest names one program per hook); counts what it drops. */
#include <linux/pkt_cls.h>
#include "bpfleet.h"
#include "firewall.h"

/* tcx: hand the packet to the next program of the chain (the 6.1 uapi lacks TCX_NEXT). */
#define FIREWALL_TCX_NEXT -1

enum { DROPPED };

SEC("xdp")
int firewall_xdp(struct xdp_md *ctx)
{
	if (!firewall_blocks((void *)(long)ctx->data, (void *)(long)ctx->data_end))
		return XDP_PASS;
	bpfleet_count(DROPPED, 1);
	return XDP_DROP;
}

SEC("tc")
int firewall_tc(struct __sk_buff *skb)
{
	if (!firewall_blocks((void *)(long)skb->data, (void *)(long)skb->data_end))
		return FIREWALL_TCX_NEXT;
	bpfleet_count(DROPPED, 1);
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
