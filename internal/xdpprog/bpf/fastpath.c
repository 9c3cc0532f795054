// SPDX-License-Identifier: GPL-2.0
//
// xskgate's fast path for offloaded flows: a tc (tcx) ingress program on
// both interfaces that redirects a segment of an offloaded flow to the
// other interface, as an skb. Compiled by bpf2go with steer.c.
//
// Why tc and not XDP_REDIRECT: a neighbour with TX checksum offload (every
// veth and container interface by default) sends TCP with CHECKSUM_PARTIAL,
// only the pseudo-header summed. An XDP redirect turns the skb into an
// xdp_frame and loses that state, so the receiver sees a wrong checksum and
// drops the segment (TcpInCsumErrors). A tc redirect moves the skb itself:
// checksum state, GSO and all.
//
// The XDP program of each interface (steer.c) looks the flow up first and,
// on a hit, returns XDP_PASS instead of handing the frame to AF_XDP; every
// other frame goes to AF_XDP, so what reaches this program is offloaded
// TCP, or a frame whose queue has no socket. A TCP segment whose flow is
// not in the map (user space removed it after XDP passed the segment) is
// dropped and counted: the stack of a bump in the wire has nowhere to send
// it, and must never forward it uninspected.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "fastpath.h"

char __license[] SEC("license") = "GPL";

// Set at load time.
volatile const __u32 outer_ifindex = 0;
volatile const __u32 inner_ifindex = 0;

FAST_MAP;

// Counters, per CPU, one slot per direction and one for the lost: a
// segment costs one lookup. Keep in step with fastpath.go.
struct counters {
	__u64 pkts, bytes;
};

enum {
	F_IN,   // outer -> inner
	F_OUT,  // inner -> outer
	F_LOST, // pkts: TCP passed by XDP whose flow left the map: dropped
	F_NUM,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct counters);
	__uint(max_entries, F_NUM);
} xskgate_fast_stats SEC(".maps");

static __always_inline void add(__u32 idx, __u64 bytes)
{
	struct counters *c = bpf_map_lookup_elem(&xskgate_fast_stats, &idx);
	if (c) {
		c->pkts++;
		c->bytes += bytes;
	}
}

static __always_inline void v4to16(struct addr16 *a, __u32 v4)
{
	a->w[0] = 0;
	a->w[1] = 0;
	a->w[2] = bpf_htonl(0xffff);
	a->w[3] = v4;
}

SEC("tc")
int xskgate_fast_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct tcphdr *tcp;
	struct addr16 src, dst;

	if ((void *)(eth + 1) > end)
		return TC_ACT_OK;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_TCP || ip->ihl != 5)
			return TC_ACT_OK;
		tcp = (void *)(ip + 1);
		v4to16(&src, ip->saddr);
		v4to16(&dst, ip->daddr);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_TCP)
			return TC_ACT_OK;
		tcp = (void *)(ip6 + 1);
		__builtin_memcpy(src.w, ip6->saddr.in6_u.u6_addr32, 16);
		__builtin_memcpy(dst.w, ip6->daddr.in6_u.u6_addr32, 16);
	} else {
		return TC_ACT_OK;
	}
	if ((void *)(tcp + 1) > end)
		return TC_ACT_OK;

	int in = skb->ifindex == outer_ifindex;
	struct flowkey k = {};
	if (in) {
		k.src = src;
		k.dst = dst;
		k.sport = tcp->source;
		k.dport = tcp->dest;
	} else {
		k.src = dst;
		k.dst = src;
		k.sport = tcp->dest;
		k.dport = tcp->source;
	}
	struct fastval *v = bpf_map_lookup_elem(&xskgate_fast, &k);
	if (!v) {
		add(F_LOST, skb->len);
		return TC_ACT_SHOT;
	}
	// The coarse clock (a tick behind at most) is enough for ageing and
	// cheaper per segment.
	__u64 now = bpf_ktime_get_coarse_ns();
	if (now - v->seen > SEEN_EVERY)
		v->seen = now;
	add(in ? F_IN : F_OUT, skb->len);
	return bpf_redirect(in ? inner_ifindex : outer_ifindex, 0);
}
