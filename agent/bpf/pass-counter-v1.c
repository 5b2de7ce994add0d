/* pass-counter 1.0.0: passes every packet and counts it. */
#include "bpfleet.h"

SEC("xdp")
int pass_counter(struct xdp_md *ctx)
{
	bpfleet_count(0, 1);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
