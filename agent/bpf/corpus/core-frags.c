/*
 * Corpus: CO-RE against the running kernel's BTF (vmlinux.h generated from it by bpftool),
 * in an `xdp.frags` program: field accesses on kernel types are relocated by libbpf at load,
 * and a field that may not exist is probed first. VERSION (1 or 2) changes the code.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#define BPFLEET_MAX_COUNTERS 8
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BPFLEET_MAX_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} bpfleet_counters SEC(".maps");

SEC("xdp.frags")
int core_frags(struct xdp_md *ctx)
{
	__u32 slot = 0;
	__u64 *packets = bpf_map_lookup_elem(&bpfleet_counters, &slot);
	__u64 len = ctx->data_end - ctx->data;

	/* Relocated against this kernel's struct xdp_md: present in every kernel bpfleet supports. */
	if (bpf_core_field_exists(ctx->rx_queue_index) && ctx->rx_queue_index == 0xffffffff)
		return XDP_DROP;
	if (packets)
		*packets += VERSION;
	slot = 1;
	packets = bpf_map_lookup_elem(&bpfleet_counters, &slot);
	if (packets && bpf_core_type_exists(struct xdp_buff))
		*packets += len + bpf_xdp_get_buff_len(ctx) * 0;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
