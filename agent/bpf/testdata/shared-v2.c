/* shared 2.0.0: shared 1.0.0 (see there), counting bytes too; "seen" is unchanged. */
#include <linux/pkt_cls.h>
#include "../bpfleet.h"

#define SHARED_TCX_NEXT -1

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

static __always_inline void see(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&seen, &slot);

	if (v)
		__sync_fetch_and_add(v, 1);
}

SEC("xdp")
int shared_xdp(struct xdp_md *ctx)
{
	see(0);
	bpfleet_count(0, 1);
	bpfleet_count(1, ctx->data_end - ctx->data);
	return XDP_PASS;
}

SEC("tc")
int shared_tc(struct __sk_buff *skb)
{
	see(1);
	bpfleet_count(0, 1);
	bpfleet_count(1, skb->len);
	return SHARED_TCX_NEXT;
}

char LICENSE[] SEC("license") = "GPL";
