/* Declares `bpfleet_counters` with twice the slots of bpfleet.h: a pinned map of the
 * standard shape cannot be reused by it. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} bpfleet_counters SEC(".maps");

SEC("xdp")
int pass_counter(struct xdp_md *ctx)
{
	__u32 slot = 0;
	__u64 *v = bpf_map_lookup_elem(&bpfleet_counters, &slot);

	if (v)
		*v += 1;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
