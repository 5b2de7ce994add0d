/*
 * Corpus: several programs on several hooks in one object (XDP, tcx ingress, tcx egress)
 * sharing one map and one sub-program, in the section names libbpf 1.x uses.
 * VERSION (1 or 2) changes the code.
 */
#include "../bpfleet.h"
#include <linux/pkt_cls.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} hook_hits SEC(".maps");

static __noinline int hit(__u32 hook)
{
	__u64 *v = bpf_map_lookup_elem(&hook_hits, &hook);

	if (v)
		__sync_fetch_and_add(v, VERSION);
	bpfleet_count(0, 1);
	return 0;
}

SEC("xdp")
int multi_xdp(struct xdp_md *ctx)
{
	hit(0);
	return XDP_PASS;
}

SEC("tcx/ingress")
int multi_ingress(struct __sk_buff *skb)
{
	hit(1);
	return TC_ACT_OK;
}

SEC("tcx/egress")
int multi_egress(struct __sk_buff *skb)
{
	hit(2);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
