/*
 * Corpus: CO-RE against the running kernel's BTF (vmlinux.h generated from it by bpftool),
 * in an `xdp.frags` program: field accesses on kernel types are relocated by libbpf at load,
 * and a field that may not exist is probed first. VERSION (1 or 2) changes the code.
 */
#include "vmlinux.h"
#include "../bpfleet.h"
#include <bpf/bpf_core_read.h>

SEC("xdp.frags")
int core_frags(struct xdp_md *ctx)
{
	/* Relocated against this kernel's struct xdp_md: present in every kernel bpfleet supports. */
	if (bpf_core_field_exists(ctx->rx_queue_index) && ctx->rx_queue_index == 0xffffffff)
		return XDP_DROP;
	bpfleet_count(0, VERSION);
	if (bpf_core_type_exists(struct xdp_buff))
		bpfleet_count(1, bpf_xdp_get_buff_len(ctx));
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
