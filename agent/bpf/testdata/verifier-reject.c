/* Compiles cleanly, but the verifier must refuse it: it reads the first packet byte
 * without checking it against data_end, an out-of-bounds packet access. */
#include "../bpfleet.h"

SEC("xdp")
int pass_counter(struct xdp_md *ctx)
{
	unsigned char *first = (unsigned char *)(long)ctx->data;

	bpfleet_count(0, *first);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
