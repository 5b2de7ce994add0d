/* devmap 1.0.0: redirects through a devmap the kernel marks read-only to programs
 * (BPF_F_RDONLY_PROG, added by the kernel, never by the module): an upgrade must still reuse it. */
#include "../bpfleet.h"

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} tx_ports SEC(".maps");

SEC("xdp")
int pass_counter(struct xdp_md *ctx)
{
	bpfleet_count(0, 1);
	return bpf_redirect_map(&tx_ports, 0, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";
