/* state 2.0.0: a persistent map "state" of 8 entries; versions 1 and 2 disagree on its size,
 * so a leftover pin of one must not block the other once no program uses it. */
#include "../bpfleet.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} state SEC(".maps");

SEC("xdp")
int pass_counter(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *seen = bpf_map_lookup_elem(&state, &key);

	if (seen)
		*seen += 1;
	bpfleet_count(0, 1);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
