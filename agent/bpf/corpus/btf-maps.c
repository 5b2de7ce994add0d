/*
 * Corpus: every BTF-defined map kind real modules declare (hash, LRU hash, array, per-CPU
 * hash, devmap_hash, ring buffer, array of maps), used by one XDP program so the verifier
 * keeps them all. VERSION (1 or 2) changes the code.
 */
#include "../bpfleet.h"

struct flow { __u32 saddr; __u32 daddr; };

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct flow);
	__type(value, __u64);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} recent SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} per_cpu_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
} tx_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} inner_a SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner);
} tables SEC(".maps") = {
	.values = { [0] = &inner_a },
};

SEC("xdp")
int btf_maps(struct xdp_md *ctx)
{
	struct flow f = { .saddr = ctx->ingress_ifindex, .daddr = VERSION };
	__u32 zero = 0, key = ctx->rx_queue_index;
	__u64 one = 1, *v;
	void *inner;

	bpf_map_update_elem(&flows, &f, &one, BPF_ANY);
	bpf_map_update_elem(&recent, &key, &one, BPF_ANY);
	v = bpf_map_lookup_elem(&per_cpu_hits, &key);
	if (v)
		*v += 1;
	else
		bpf_map_update_elem(&per_cpu_hits, &key, &one, BPF_NOEXIST);
	v = bpf_map_lookup_elem(&settings, &zero);
	if (v && *v == 0xdead) {
		__u64 *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

		if (e) {
			*e = key;
			bpf_ringbuf_submit(e, 0);
		}
	}
	inner = bpf_map_lookup_elem(&tables, &zero);
	if (inner) {
		v = bpf_map_lookup_elem(inner, &zero);
		if (v)
			*v += VERSION;
	}
	bpfleet_count(0, 1);
	if (v && *v == 0xbeef)
		return bpf_redirect_map(&tx_ports, key, XDP_PASS);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
