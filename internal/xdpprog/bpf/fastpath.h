// SPDX-License-Identifier: GPL-2.0
//
// The fast path's flow map, shared by the XDP program of both interfaces
// (steer.c), which hands a flow's segments to the stack instead
// of to AF_XDP, and the tc program (fastpath.c), which redirects them to
// the other interface. One definition, included by both objects: user
// space creates the map once and hands it to every program that names it.

#ifndef XSKGATE_FASTPATH_H
#define XSKGATE_FASTPATH_H

// An address as user space's netip.Addr.As16: IPv4 is ::ffff:a.b.c.d.
struct addr16 {
	__u32 w[4];
};

// v4to16 is an IPv4 address (network order) as an addr16.
static __always_inline void v4to16(struct addr16 *a, __u32 v4)
{
	a->w[0] = 0;
	a->w[1] = 0;
	a->w[2] = bpf_htonl(0xffff);
	a->w[3] = v4;
}

// A tracked flow as seen arriving on outer: src is the Internet side.
struct flowkey {
	struct addr16 src, dst;
	__u16 sport, dport; // network order
	__u32 pad;
};

// flowkey_of fills k with the flow of a segment from src:sport to
// dst:dport (ports in network order), keyed as it arrives on outer: a
// segment that arrived on inner (from_inner) has its ends swapped.
static __always_inline void flowkey_of(struct flowkey *k, const struct addr16 *src, const struct addr16 *dst,
				       __u16 sport, __u16 dport, int from_inner)
{
	if (from_inner) {
		k->src = *dst;
		k->dst = *src;
		k->sport = dport;
		k->dport = sport;
	} else {
		k->src = *src;
		k->dst = *dst;
		k->sport = sport;
		k->dport = dport;
	}
}

// fastval is an offloaded flow's kernel-side state. seen is written at most
// every SEEN_EVERY ns, so that both directions' CPUs rarely share a dirty
// cache line; user space reads it to keep the flow alive in its table.
// delta is a SYN-proxied flow's sequence offset (server ISN minus cookie
// ISN; 0 for others): toward the server the ACK and SACK edges gain it,
// toward the client the sequence number loses it, as user space's
// translate does. flags: FV_DRAINING is set when user space takes the flow
// back without a SYN, FIN or RST to mark the moment (a reload): XDP stops
// passing its segments to the fast path, while the tc program still
// carries those XDP passed before, and user space deletes the entry at its
// next sweep. Deleting it at once would drop those in flight.
struct fastval {
	__u64 seen; // ktime ns (coarse) of a recent segment
	__u32 delta;
	__u32 flags;
};

#define FV_DRAINING 1

#define SEEN_EVERY 100000000ULL // 100 ms

// TCP flags that always go to user space: SYN, FIN, RST (the tracker
// must see a connection open and close).
#define FAST_EXCLUDED 0x07

#define FAST_MAP                                      \
	struct {                                      \
		__uint(type, BPF_MAP_TYPE_HASH);      \
		__type(key, struct flowkey);          \
		__type(value, struct fastval);        \
		__uint(max_entries, 1);               \
	} xskgate_fast SEC(".maps")

// opt_at reads the TCP option at off in buf, the len bytes of a segment's
// options copied to the stack (the mask keeps every read inside buf for
// the verifier): its kind and length, 1 for a NOP. It returns 1 where the
// walk ends: the end, an end-of-options, or a malformed length. Both
// option walkers (steer.c's SYN options, fastpath.c's SACK edges) step
// through it, one bpf_loop callback per option.
static __always_inline int opt_at(const __u8 *buf, __u32 off, __u32 len, __u8 *kind, __u8 *olen)
{
	if (off >= len || off >= 40)
		return 1;
	*kind = buf[off & 63];
	if (*kind == 0)
		return 1;
	if (*kind == 1) {
		*olen = 1;
		return 0;
	}
	*olen = buf[(off + 1) & 63];
	return *olen < 2 || off + *olen > len;
}

#endif
