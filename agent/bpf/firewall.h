/* What every firewall module version agrees on: which packets are blocked. */
#ifndef FIREWALL_H
#define FIREWALL_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>

/* bench/dataplane/firewall.ts sends to this port and expects none of it to get through. */
#define FIREWALL_BLOCKED_UDP_PORT 9999

/* Fragment offset bits of iphdr.frag_off (the kernel keeps IP_OFFSET out of uapi). */
#define FIREWALL_IP_OFFSET 0x1fff

/* True for an IPv4 UDP packet to the blocked port. A non-first fragment carries no UDP
 * header and passes: without its first fragment it never reassembles. */
static __always_inline int firewall_blocks(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP || ip->ihl < 5)
		return 0;
	if (ip->frag_off & bpf_htons(FIREWALL_IP_OFFSET))
		return 0;
	udp = (void *)ip + ip->ihl * 4;
	if ((void *)(udp + 1) > data_end)
		return 0;
	return udp->dest == bpf_htons(FIREWALL_BLOCKED_UDP_PORT);
}

#endif
