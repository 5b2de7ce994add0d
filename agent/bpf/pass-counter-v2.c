/* pass-counter 2.0.0: passes every packet, counts packets and, new in v2, bytes. */
#include "bpfleet.h"

SEC("xdp")
int pass_counter(struct xdp_md *ctx)
{
	bpfleet_count(0, 1);
	bpfleet_count(1, ctx->data_end - ctx->data);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
