/* pass-counter 3.0.0-bad: a deliberately broken release that drops all traffic.
 * It keeps counting like its predecessors so only the drop rate gives it away. */
#include "bpfleet.h"

SEC("xdp")
int pass_counter(struct xdp_md *ctx)
{
	bpfleet_count(0, 1);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
