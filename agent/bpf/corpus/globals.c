/*
 * Corpus: a module configured through globals, as libbpf skeleton users write them.
 * `const volatile` values land in .rodata (frozen at load: the per-site configuration),
 * initialised globals in .data and zeroed ones in .bss (libbpf turns each section into an
 * internal array map named <object>.<section>). A non-inlined sub-program classifies.
 * VERSION (1 or 2) changes the code so the two builds are two versions of one module.
 */
#include "../bpfleet.h"
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>

const volatile __u16 blocked_port = 0;	/* 0: block nothing */
__u32 mode = 1;				/* .data */
__u64 seen_total;			/* .bss */

static __noinline int udp_dest_port(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp;

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_UDP)
		return -1;
	udp = (void *)ip + ip->ihl * 4;
	if ((void *)(udp + 1) > data_end)
		return -1;
	return bpf_ntohs(udp->dest);
}

SEC("xdp")
int globals_filter(struct xdp_md *ctx)
{
	int port = udp_dest_port((void *)(long)ctx->data, (void *)(long)ctx->data_end);

	__sync_fetch_and_add(&seen_total, VERSION);
	bpfleet_count(0, 1);
	if (mode && blocked_port && port == blocked_port) {
		bpfleet_count(1, 1);
		return XDP_DROP;
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
