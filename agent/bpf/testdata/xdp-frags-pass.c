/* xdp-frags-pass 1.0.0: passes every packet and counts it, and says it can take packets
 * larger than a page (SEC("xdp.frags") sets BPF_F_XDP_HAS_FRAGS), so native XDP accepts it
 * on an interface whose MTU does not fit one page. */
#include "../bpfleet.h"

SEC("xdp.frags")
int pass_counter(struct xdp_md *ctx)
{
	bpfleet_count(0, 1);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
