/* Conventions every bpfleet module follows, so the agent can read its counters. */
#ifndef BPFLEET_H
#define BPFLEET_H

/* A CO-RE module includes vmlinux.h first, which already has every type linux/bpf.h has. */
#ifndef __VMLINUX_H__
#include <linux/bpf.h>
#endif
#include <bpf/bpf_helpers.h>

/* Slots of `bpfleet_counters`, named in index order by the manifest's `counters`. */
#define BPFLEET_MAX_COUNTERS 8

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BPFLEET_MAX_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} bpfleet_counters SEC(".maps");

static __always_inline void bpfleet_count(__u32 slot, __u64 by)
{
	__u64 *v = bpf_map_lookup_elem(&bpfleet_counters, &slot);

	if (v)
		*v += by;
}

#endif
