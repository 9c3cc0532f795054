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
	F_LOST, // TCP passed by XDP whose flow left the map: dropped
	F_XLATE, // a SYN-proxied flow's segment that could not be translated: dropped
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

// rewrite32 replaces the 4 bytes at off in the TCP segment at l4 (old, as
// read from the frame) with val, and updates the checksum. The update is
// by 16-bit words from the segment's start, so a value at an odd offset
// counts as if its bytes were rotated by one (b3 b0 b1 b2). A
// CHECKSUM_PARTIAL skb's field holds only the pseudo-header sum, which the
// helper then leaves alone.
static __always_inline int rewrite32(struct __sk_buff *skb, __u32 l4, __u32 off, __u32 old, __u32 val)
{
	__u32 from = old, to = val;
	if (off & 1) {
		from = from << 8 | from >> 24;
		to = to << 8 | to >> 24;
	}
	if (bpf_l4_csum_replace(skb, l4 + 16, from, to, sizeof(__u32)))
		return -1;
	return bpf_skb_store_bytes(skb, l4 + off, &val, sizeof(val), 0);
}

// sackscan finds the SACK option in a segment's options, copied to the
// stack: one bpf_loop callback per option.
struct sackscan {
	__u8 buf[64];
	__u32 off, len;
	__u32 at, blocks; // offset of the first edge in buf, number of blocks
};

static long scan_sack(__u32 i, void *arg)
{
	struct sackscan *s = arg;
	__u8 kind, len;
	if (opt_at(s->buf, s->off, s->len, &kind, &len))
		return 1;
	if (kind == 5 && len >= 10) {
		s->at = s->off + 2;
		s->blocks = (len - 2) / 8;
		return 1;
	}
	s->off += len;
	return 0;
}

// translate applies a SYN-proxied flow's delta (struct fastval): in (toward
// the server) to the ACK and the SACK edges, out to the sequence number.
// l4 is the TCP header's offset, doff its length; seq, ack and flags as
// read before any write.
static __always_inline int translate(struct __sk_buff *skb, int in, __u32 l4, __u32 doff, __u32 seq, __u32 ack,
				     __u8 flags, __u32 delta)
{
	if (!in)
		return rewrite32(skb, l4, 4, seq, bpf_htonl(bpf_ntohl(seq) - delta));
	if ((flags & 0x10) && rewrite32(skb, l4, 8, ack, bpf_htonl(bpf_ntohl(ack) + delta)))
		return -1;
	__u32 optlen = doff - 20;
	if (optlen < 10 || optlen > 40)
		return 0; // no room for a SACK block
	struct sackscan sc = {.len = optlen};
	if (bpf_skb_load_bytes(skb, l4 + 20, sc.buf, optlen & 63))
		return -1;
	bpf_loop(40, scan_sack, &sc, 0);
	for (int b = 0; b < 4; b++) {
		if (b >= sc.blocks)
			break;
		for (int e = 0; e < 2; e++) {
			__u32 at = sc.at + b * 8 + e * 4;
			if (at + 4 > optlen || at > 36)
				return 0;
			__u32 old;
			__builtin_memcpy(&old, &sc.buf[at & 63], sizeof(old));
			if (rewrite32(skb, l4, 20 + at, old, bpf_htonl(bpf_ntohl(old) + delta)))
				return -1;
		}
	}
	return 0;
}

SEC("tc")
int xskgate_fast_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct tcphdr *tcp;
	struct addr16 src, dst;

	__u32 l4 = sizeof(struct ethhdr);

	if ((void *)(eth + 1) > end)
		return TC_ACT_OK;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_TCP || ip->ihl != 5)
			return TC_ACT_OK;
		tcp = (void *)(ip + 1);
		l4 += sizeof(struct iphdr);
		v4to16(&src, ip->saddr);
		v4to16(&dst, ip->daddr);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_TCP)
			return TC_ACT_OK;
		tcp = (void *)(ip6 + 1);
		l4 += sizeof(struct ipv6hdr);
		__builtin_memcpy(src.w, ip6->saddr.in6_u.u6_addr32, 16);
		__builtin_memcpy(dst.w, ip6->daddr.in6_u.u6_addr32, 16);
	} else {
		return TC_ACT_OK;
	}
	if ((void *)(tcp + 1) > end)
		return TC_ACT_OK;

	int in = skb->ifindex == outer_ifindex;
	struct flowkey k = {};
	flowkey_of(&k, &src, &dst, tcp->source, tcp->dest, !in);
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
	__u32 delta = v->delta;
	if (delta) {
		__u32 seq = tcp->seq, ack = tcp->ack_seq, doff = tcp->doff * 4;
		__u8 flags = ((__u8 *)tcp)[13];
		if (doff < 20 || translate(skb, in, l4, doff, seq, ack, flags, delta)) {
			// Not forwarded untranslated: the endpoint would take it
			// as out of window. The sender retransmits.
			add(F_XLATE, skb->len);
			return TC_ACT_SHOT;
		}
	}
	add(in ? F_IN : F_OUT, skb->len);
	return bpf_redirect(in ? inner_ifindex : outer_ifindex, 0);
}
