// SPDX-License-Identifier: GPL-2.0
//
// xskgate's XDP program: the in-kernel first line, then the hand-over of
// every frame it passes to the AF_XDP socket of its queue, with a record
// of the length it saw. Compiled by bpf2go (go generate ./internal/xdpprog);
// the objects are committed so that go build needs no clang.
//
// Per frame, on the outer interface only (first_line set at load):
//   1. allowlist (source LPM trie): skip the first line;
//   2. blocklist (source LPM trie): drop;
//   3. penalty box (LRU hash of sources with an expiry): drop until then;
//   4. scopes (destination LPM trie) under attack, with flags set by user
//      space from its meters:
//      - challenge: a SYN is answered here with a cookie SYN-ACK (XDP_TX),
//        the same SipHash cookie the user-space proxy checks;
//      - out-of-state: non-SYN TCP whose 5-tuple is not in the flow map
//        (mirrored by user space) is dropped.
// Each stage can be off or in monitor mode (counts what it would do).
// What is not dropped or answered goes to user space, which stays the
// authority: the first line only ever acts on what user space told it.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "fastpath.h"

char __license[] SEC("license") = "GPL";

#define RECORD_SIZE 16
#define META_MAGIC 0x58534B01
#define HEAD_MAGIC 0x58534B81

// Set at load time (cilium/ebpf rewrites .rodata).
volatile const __s32 len_skew = 0;   // test-only: planted length mismatch
volatile const __u32 first_line = 0; // run the first line (outer only)
// Hand the segments of offloaded flows (xskgate_fast, fastpath.h) to the
// stack, where fastpath.c's tc program redirects them: FAST_OUTER or
// FAST_INNER says how this interface sees a flow's key.
volatile const __u32 fast_path = 0;
#define FAST_OUTER 1
#define FAST_INNER 2
// test-only: refuse growing the frame for a cookie SYN-ACK at its tail
// (GROW_NO_TAIL, as veth's copied skbs do for small SYNs), or at both ends
// (GROW_NONE). The verifier prunes what a constant 0 leaves dead.
volatile const __u32 test_grow = 0;
#define GROW_NO_TAIL 1
#define GROW_NONE 2

// ---- maps ----------------------------------------------------------------

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(key_size, 4);
	__uint(value_size, 4);
	__uint(max_entries, 1); // resized by the loader
} xskgate_xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1); // resized by the loader
} xskgate_seqs SEC(".maps");

// Counters, per CPU. Keep in step with the Go side (counters.go).
enum {
	C_META_REFUSED,
	C_NO_HEADROOM,
	C_ALLOW_PASS,
	C_BLOCK_DROP,
	C_BLOCK_WOULD,
	C_PENALTY_DROP,
	C_PENALTY_WOULD,
	C_OOS_DROP,
	C_OOS_WOULD,
	C_COOKIE_SENT,
	C_COOKIE_WOULD,
	C_COOKIE_NOFIT,
	C_NOT_PARSED,
	C_COOKIE_LIMITED,
	C_COOKIE_TO_USER,
	C_COOKIE_PASSED,
	C_NUM,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, C_NUM);
} xskgate_stats SEC(".maps");

// Stage switches in config.stages and config.monitor.
#define ST_ALLOW (1 << 0)
#define ST_BLOCK (1 << 1)
#define ST_PENALTY (1 << 2)
#define ST_OOS (1 << 3)
#define ST_COOKIE (1 << 4)

struct config {
	__u32 stages;  // ST_* on
	__u32 monitor; // ST_* counting only
	__u64 key0, key1;   // SipHash key of the cookie (as user space's)
	__u64 clock_base;   // ktime at user space's clock zero
	__u16 mss4, mss6;   // MSS the proxy advertises
	__u16 window;       // window of the cookie SYN-ACK
	__u8 wscale;        // the proxy's window scale
	__u8 sack;          // the proxy offers SACK
	// cookie_user: XDP_TX does not work on this interface, so the cookie
	// stage only enforces the challenge budget: a SYN within it goes on to
	// the user-space proxy, which answers it; one beyond it is dropped
	// here, as the proxy would drop it, without an AF_XDP round trip.
	__u8 cookie_user;
	// The challenge budget (the proxy's challenge rate) as a GCRA, so that
	// the gate cannot be turned into a reflector: ns per cookie SYN-ACK
	// (0: no limit) and the burst as a tolerance in ns.
	__u64 cookie_interval;
	__u64 cookie_tolerance;
	// Sources that passed a challenge (xskgate_passed) skip the budget
	// within their own GCRA: ns per SYN-ACK and the burst as a tolerance
	// (passed_interval 0: the stage ignores the map).
	__u64 passed_interval;
	__u64 passed_tolerance;
	// ...and all passed sources together (0: no cap), so that many of them
	// (a botnet whose members each passed, or spoofed passed addresses)
	// cannot draw an unbounded number of answers outside the budget.
	__u64 passed_all_interval;
	__u64 passed_all_tolerance;
	// L_* : which source lists hold entries. A flood frame pays for each
	// lookup it makes, and a hash lookup of a random source in a large
	// empty map is a cache miss: lists known empty are not looked up.
	__u32 lists;
};

#define L_ALLOW (1 << 0)   // the allowlist has prefixes
#define L_BLOCK (1 << 1)   // the blocklist has prefixes
#define L_PENALTY (1 << 2) // a source was put in the penalty box since load
#define L_PASSED (1 << 3)  // a source passed a challenge since load

// The challenge budget's theoretical arrival time, one for all CPUs.
//
// Why one shared word and not per-CPU budgets: NAPI of a queue runs on
// whatever CPU the driver (for veth: the sender) picks, so a budget split
// per possible CPU gave rate/ncpu where all SYNs land on one CPU. Per-CPU
// budgets each sized to the full rate would need a global cap on top to
// keep the total at the rate, i.e. a shared word anyway. So the GCRA is
// one word updated by compare-and-swap. It costs little under a flood:
// SYNs over budget only read the word (budget_left), so its cache line
// stays shared between CPUs; it is written at most rate times a second
// plus the burst. A CAS lost to another CPU means that CPU took a cookie
// meanwhile; after a few such losses the SYN counts as over budget, so
// contention can only lower the rate, never raise it above the budget.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 2); // 0: the challenge budget; 1: passed sources, all together
} xskgate_budget SEC(".maps");

// budget_left reports whether a cookie could be taken at now, reading only.
static __always_inline int budget_left(const struct config *c, const __u64 *tat, __u64 now)
{
	__u64 t = *tat;
	__u64 base = t > now ? t : now;
	return base - now <= c->cookie_tolerance;
}

#define BUDGET_TRIES 4

// gcra_take spends one event of the GCRA at tat (interval and tolerance in
// ns), if one is left; a compare-and-swap lost BUDGET_TRIES times in a row
// counts as none left.
static __always_inline int gcra_take(__u64 *tat, __u64 now, __u64 interval, __u64 tolerance)
{
	for (int i = 0; i < BUDGET_TRIES; i++) {
		__u64 t = *(volatile __u64 *)tat;
		__u64 base = t > now ? t : now;
		if (base - now > tolerance)
			return 0;
		if (__sync_val_compare_and_swap(tat, t, base + interval) == t)
			return 1;
	}
	return 0;
}

// budget_take spends one cookie of the budget, if one is left.
static __always_inline int budget_take(const struct config *c, __u64 *tat, __u64 now)
{
	return gcra_take(tat, now, c->cookie_interval, c->cookie_tolerance);
}

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct config);
	__uint(max_entries, 1);
} xskgate_config SEC(".maps");

struct lpm4 {
	__u32 prefixlen;
	__u32 addr;
};
struct lpm6 {
	__u32 prefixlen;
	__u32 addr[4];
};

#define LPM(name, keytype, valtype, n)                 \
	struct {                                       \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);   \
		__type(key, struct keytype);           \
		__type(value, valtype);                \
		__uint(max_entries, n);                \
		__uint(map_flags, BPF_F_NO_PREALLOC);  \
	} name SEC(".maps")

LPM(xskgate_allow4, lpm4, __u32, 1 << 16);
LPM(xskgate_allow6, lpm6, __u32, 1 << 16);
LPM(xskgate_block4, lpm4, __u32, 1 << 16);
LPM(xskgate_block6, lpm6, __u32, 1 << 16);

// A protected scope: flags from user space's meters, and what the first
// line did for it, which user space adds to its meters (the frames the
// first line takes never reach them) to hold a flag while the attack
// lasts.
#define SC_OOS (1 << 0)       // out-of-state threshold exceeded: drop untracked
#define SC_CHALLENGE (1 << 1) // SYN threshold exceeded: answer with cookies
#define SC_MONITOR (1 << 2)   // the scope's rule only counts: act on nothing
struct scope {
	__u32 flags;
	__u32 pad;
	__u64 oos;  // out-of-state frames dropped (or that would be)
	__u64 syns; // SYNs answered with a cookie (or that would be)
};
LPM(xskgate_scope4, lpm4, struct scope, 1 << 12);
LPM(xskgate_scope6, lpm6, struct scope, 1 << 12);

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct addr16);
	__type(value, __u64); // expiry, ktime ns
	__uint(max_entries, 1 << 16);
} xskgate_penalty SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct flowkey);
	__type(value, __u8);
	__uint(max_entries, 1); // resized by the loader
} xskgate_flows SEC(".maps");

// Offloaded flows (fastpath.h): one map for both interfaces' programs and
// the tc redirect, created by user space.
FAST_MAP;

// Sources that passed a challenge: user space puts a source here when it
// completes a proxied handshake from a valid cookie, which proves the
// source receives what is sent to it. While its scope is challenged, a SYN
// from such a source is answered without spending the challenge budget, so
// a flood above the budget cannot crowd out clients that already proved
// themselves (each would otherwise get an answer only with probability
// budget/flood, and lose a SYN retransmission, 1 s and more, per miss).
// tat is the source's own GCRA: spoofing a passed address reflects no more
// than its rate toward it; beyond that its SYNs compete for the budget.
struct passed {
	__u64 until; // expiry, ktime ns
	__u64 tat;   // theoretical arrival time of its next SYN-ACK
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct addr16);
	__type(value, struct passed);
	__uint(max_entries, 1 << 16);
} xskgate_passed SEC(".maps");

// ---- helpers -------------------------------------------------------------

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&xskgate_stats, &idx);
	if (v)
		*v += 1;
}

// stage returns 0 (off), 1 (on) or 2 (monitor) for stage s.
static __always_inline int stage(const struct config *c, __u32 s)
{
	if (!(c->stages & s))
		return 0;
	return c->monitor & s ? 2 : 1;
}

#define ROTL(x, b) (__u64)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                            \
	do {                                                                \
		v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);   \
		v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                      \
		v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                      \
		v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);   \
	} while (0)

// siphash6 is SipHash-2-4 of six 64-bit words, as protect.sipKey.sum.
static __always_inline __u64 siphash6(__u64 k0, __u64 k1, const __u64 *m)
{
	__u64 v0 = k0 ^ 0x736f6d6570736575ULL;
	__u64 v1 = k1 ^ 0x646f72616e646f6dULL;
	__u64 v2 = k0 ^ 0x6c7967656e657261ULL;
	__u64 v3 = k1 ^ 0x7465646279746573ULL;
#pragma unroll
	for (int i = 0; i < 6; i++) {
		v3 ^= m[i];
		SIPROUND;
		SIPROUND;
		v0 ^= m[i];
	}
	__u64 b = (__u64)48 << 56;
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

static __always_inline __u64 be64pair(__u32 hi, __u32 lo)
{
	return (__u64)bpf_ntohl(hi) << 32 | bpf_ntohl(lo);
}

#define COOKIE_TICK 16000000000ULL
#define WSCALE_NONE 15

struct synopts {
	__u16 mss;
	__u8 wscale; // WSCALE_NONE if absent
	__u8 sack;
};

// optscan is the state of a scan of a SYN's options, copied to the stack:
// one bpf_loop callback per option keeps the verifier's work linear (an
// unrolled scan branches on every option and explodes its states).
struct optscan {
	__u8 buf[64];
	__u32 off, len;
	struct synopts o;
};

static long scan_opt(__u32 i, void *arg)
{
	struct optscan *s = arg;
	__u32 off = s->off;
	__u8 kind, len;
	if (opt_at(s->buf, off, s->len, &kind, &len))
		return 1;
	if (kind == 2 && len == 4)
		s->o.mss = (__u16)s->buf[(off + 2) & 63] << 8 | s->buf[(off + 3) & 63];
	else if (kind == 3 && len == 3)
		s->o.wscale = s->buf[(off + 2) & 63] > 14 ? 14 : s->buf[(off + 2) & 63];
	else if (kind == 4 && len == 2)
		s->o.sack = 1;
	s->off = off + len;
	return 0;
}

// parse_synopts reads MSS, window scale and SACK-permitted from the len
// bytes of TCP options at offset at in the frame.
static __always_inline void parse_synopts(struct xdp_md *ctx, __u32 at, __u32 len, struct synopts *o)
{
	struct optscan s = {.len = len, .o = *o};
	if (len == 0 || len > 40)
		return;
	if (bpf_xdp_load_bytes(ctx, at, s.buf, len))
		return;
	bpf_loop(40, scan_opt, &s, 0);
	*o = s.o;
}

// parsed is what the first line needs of a frame.
struct parsed {
	int v4; // IPv4 (ip4 valid) rather than IPv6 (ip6 valid): the verifier
		// cannot tell a packet pointer from NULL, so test this instead
	struct ethhdr *eth;
	struct iphdr *ip4;
	struct ipv6hdr *ip6;
	struct tcphdr *tcp;
	struct addr16 src, dst;
};

// parse accepts Ethernet + IPv4 without options or fragments, or IPv6
// without extension headers, carrying TCP. Anything else goes to user
// space, which parses everything.
static __always_inline int parse(struct xdp_md *ctx, struct parsed *p)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	p->eth = data;
	if ((void *)(p->eth + 1) > end)
		return -1;
	if (p->eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(p->eth + 1);
		if ((void *)(ip + 1) > end || ip->ihl != 5 || ip->protocol != IPPROTO_TCP)
			return -1;
		if (ip->frag_off & bpf_htons(0x3fff)) // MF or an offset
			return -1;
		p->v4 = 1;
		p->ip4 = ip;
		p->ip6 = 0;
		p->tcp = (void *)(ip + 1);
		v4to16(&p->src, ip->saddr);
		v4to16(&p->dst, ip->daddr);
	} else if (p->eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(p->eth + 1);
		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_TCP)
			return -1;
		p->v4 = 0;
		p->ip4 = 0;
		p->ip6 = ip6;
		p->tcp = (void *)(ip6 + 1);
		__builtin_memcpy(p->src.w, ip6->saddr.in6_u.u6_addr32, 16);
		__builtin_memcpy(p->dst.w, ip6->daddr.in6_u.u6_addr32, 16);
	} else {
		return -1;
	}
	if ((void *)(p->tcp + 1) > end || p->tcp->doff < 5)
		return -1;
	// The IP length must hold the headers and fit the frame (which may
	// carry padding beyond it): what does not is malformed, user space's
	// to judge (FuzzFirstLine answered a SYN whose IPv4 length cut its
	// TCP header).
	__u32 flen = (__u32)(end - data);
	__u32 l4 = p->tcp->doff * 4;
	if (p->v4) {
		__u32 tot = bpf_ntohs(p->ip4->tot_len);
		if (p->ip4->version != 4 || tot < sizeof(struct iphdr) + l4 || sizeof(struct ethhdr) + tot > flen)
			return -1;
	} else {
		__u32 pl = bpf_ntohs(p->ip6->payload_len);
		if (p->ip6->version != 6 || pl < l4 || sizeof(struct ethhdr) + sizeof(struct ipv6hdr) + pl > flen)
			return -1;
	}
	return 0;
}

static __always_inline void *lpm_lookup(struct parsed *p, void *m4, void *m6, const struct addr16 *a)
{
	if (p->v4) {
		struct lpm4 k = {.prefixlen = 32, .addr = a->w[3]};
		return bpf_map_lookup_elem(m4, &k);
	}
	struct lpm6 k = {.prefixlen = 128};
	__builtin_memcpy(k.addr, a->w, 16);
	return bpf_map_lookup_elem(m6, &k);
}

// fold32 adds the carries of a sum of 32-bit words back in: what
// bpf_csum_diff takes as its seed is 32 bits, and a carry cut off there
// is a checksum wrong by one (FuzzFirstLine found it: two addresses whose
// words overflowed 32 bits).
static __always_inline __u32 fold32(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	return (__u32)s;
}

static __always_inline __u16 fold(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

#define SYNACK_OPTS 12
#define COOKIE_MAX_AGE 2

// cookie_mac is the cookie's 23-bit MAC: SipHash-2-4 over the client's
// and the server's address (as netip.Addr.As16), ports (host order), the
// client's ISN, the time counter and the option bits (protect.cookieMAC).
static __always_inline __u32 cookie_mac(const struct config *c, const struct addr16 *src, const struct addr16 *dst,
					__u16 sport, __u16 dport, __u32 isn, __u64 ctr, __u32 ob)
{
	__u64 m[6];
	m[0] = be64pair(src->w[0], src->w[1]);
	m[1] = be64pair(src->w[2], src->w[3]);
	m[2] = be64pair(dst->w[0], dst->w[1]);
	m[3] = be64pair(dst->w[2], dst->w[3]);
	m[4] = (__u64)sport << 48 | (__u64)dport << 32 | isn;
	m[5] = ctr << 8 | ob;
	return (__u32)siphash6(c->key0, c->key1, m) & ((1 << 23) - 1);
}

// cookie_ok checks a pure ACK's ack-1 as a cookie for its seq-1, as
// protect.checkCookie: made in this tick or the two before, with sane
// option bits and the right MAC.
static __always_inline int cookie_ok(const struct config *c, struct parsed *p)
{
	__u32 cookie = bpf_ntohl(p->tcp->ack_seq) - 1;
	__u32 isn = bpf_ntohl(p->tcp->seq) - 1;
	__u64 cur = (bpf_ktime_get_ns() - c->clock_base) / COOKIE_TICK;
	__u64 lo = cookie >> 7 & 3;
	__u64 ctr = cur - ((cur - lo) & 3);
	if (cur - ctr > COOKIE_MAX_AGE || ctr > cur)
		return 0;
	__u32 ob = cookie & 0x7f;
	__u32 ws = ob >> 1 & 0xf;
	if (ws > 14 && ws != WSCALE_NONE)
		return 0;
	return cookie_mac(c, &p->src, &p->dst, bpf_ntohs(p->tcp->source), bpf_ntohs(p->tcp->dest), isn, ctr, ob) ==
	       cookie >> 9;
}

// syn is what the cookie SYN-ACK needs of the SYN it answers, saved
// before the frame is resized (which invalidates every packet pointer).
struct syn {
	__u8 mac_src[ETH_ALEN], mac_dst[ETH_ALEN];
	__u16 sport, dport; // network order
	__u32 isn;
	struct synopts o;
};

// What cookie_answer did.
enum {
	ANS_TX,      // the frame is the cookie SYN-ACK: XDP_TX
	ANS_LIMITED, // over the challenge budget: drop
	ANS_NOFIT,   // the frame cannot hold the SYN-ACK: on to user space
	ANS_USER,    // within the budget, for user space to answer (cookie_user)
};

// grow makes the frame at least want bytes long: at its tail if the
// driver left room there, else at its head (XDP guarantees 256 bytes of
// headroom; veth's copies of small skbs have only the tail padding of
// their size class, 4 bytes for a 60-byte SYN, so about 5 in 6 of them
// cannot grow at the tail). The frame's contents are not kept: the
// SYN-ACK is written whole afterwards.
static __always_inline int grow(struct xdp_md *ctx, __u32 want)
{
	__u32 len = (__u32)((long)ctx->data_end - (long)ctx->data);
	if (len >= want)
		return 0;
	int d = (int)(want - len);
	if (test_grow != GROW_NO_TAIL && test_grow != GROW_NONE && !bpf_xdp_adjust_tail(ctx, d))
		return 0;
	if (test_grow != GROW_NONE && !bpf_xdp_adjust_head(ctx, -d))
		return 0;
	return -1;
}

// write_synack writes the whole cookie SYN-ACK answering s from the
// frame's start: Ethernet, IP (v4: header without options) and TCP with
// nopts bytes of options, as protect.reply; the frame is at least
// 14 + l3 + 20 + SYNACK_OPTS bytes long.
static __always_inline int write_synack(struct xdp_md *ctx, int v4, const struct addr16 *src, const struct addr16 *dst,
					const struct syn *s, const struct config *c, __u32 cookie, __u8 sack, __u8 ws)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 l3 = v4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);
	struct ethhdr *eth = data;
	if (v4) {
		if (data + sizeof(*eth) + sizeof(struct iphdr) + sizeof(struct tcphdr) + SYNACK_OPTS > end)
			return -1;
	} else {
		if (data + sizeof(*eth) + sizeof(struct ipv6hdr) + sizeof(struct tcphdr) + SYNACK_OPTS > end)
			return -1;
	}
	__builtin_memcpy(eth->h_dest, s->mac_src, ETH_ALEN);
	__builtin_memcpy(eth->h_source, s->mac_dst, ETH_ALEN);
	eth->h_proto = v4 ? bpf_htons(ETH_P_IP) : bpf_htons(ETH_P_IPV6);

	// TCP first: ours are MSS, then SACK-permitted, then window scale, as
	// protect.synOpts writes them.
	struct tcphdr *th = data + sizeof(*eth) + l3;
	if ((void *)th + sizeof(*th) + SYNACK_OPTS > end)
		return -1;
	__u16 mss = v4 ? c->mss4 : c->mss6;
	__u32 nopts = 4 + (sack ? 4 : 0) + (ws != WSCALE_NONE ? 4 : 0);
	__u32 tcplen = sizeof(struct tcphdr) + nopts;
	th->source = s->dport;
	th->dest = s->sport;
	th->seq = bpf_htonl(cookie);
	th->ack_seq = bpf_htonl(s->isn + 1);
	((__u8 *)th)[12] = (__u8)(tcplen / 4) << 4;
	((__u8 *)th)[13] = 0x12; // SYN|ACK
	th->window = bpf_htons(c->window);
	th->check = 0;
	th->urg_ptr = 0;
	__u8 *ob8 = (__u8 *)(th + 1);
	ob8[0] = 2;
	ob8[1] = 4;
	ob8[2] = mss >> 8;
	ob8[3] = mss & 0xff;
	__u32 n = 4;
	if (sack) {
		ob8[4] = 1; ob8[5] = 1; ob8[6] = 4; ob8[7] = 2;
		n = 8;
	}
	if (ws != WSCALE_NONE) {
		if (n == 4) {
			ob8[4] = 1; ob8[5] = 3; ob8[6] = 3; ob8[7] = ws;
		} else {
			ob8[8] = 1; ob8[9] = 3; ob8[10] = 3; ob8[11] = ws;
		}
	}

	// L3: the SYN's addresses swapped, a fresh header.
	__u64 sum = 0;
	if (v4) {
		struct iphdr *ip = data + sizeof(*eth);
		if ((void *)(ip + 1) > end)
			return -1;
		((__u8 *)ip)[0] = 0x45; // version 4, IHL 5
		ip->tos = 0;
		ip->tot_len = bpf_htons(sizeof(struct iphdr) + tcplen);
		ip->id = 0;
		ip->frag_off = bpf_htons(0x4000); // DF
		ip->ttl = 64;
		ip->protocol = IPPROTO_TCP;
		ip->saddr = dst->w[3];
		ip->daddr = src->w[3];
		ip->check = 0;
		ip->check = fold(bpf_csum_diff(0, 0, (__be32 *)ip, sizeof(*ip), 0));
		sum = (__u64)ip->saddr + ip->daddr + bpf_htons(IPPROTO_TCP) + bpf_htons(tcplen);
	} else {
		struct ipv6hdr *ip6 = data + sizeof(*eth);
		if ((void *)(ip6 + 1) > end)
			return -1;
		((__u32 *)ip6)[0] = bpf_htonl(0x60000000);
		ip6->payload_len = bpf_htons(tcplen);
		ip6->nexthdr = IPPROTO_TCP;
		ip6->hop_limit = 64;
		__builtin_memcpy(ip6->saddr.in6_u.u6_addr32, dst->w, 16);
		__builtin_memcpy(ip6->daddr.in6_u.u6_addr32, src->w, 16);
		sum = bpf_csum_diff(0, 0, (__be32 *)&ip6->saddr, 32, 0);
		sum += bpf_htonl(tcplen) + bpf_htonl(IPPROTO_TCP);
	}
	// TCP checksum over the pseudo header and the 20 + nopts bytes.
	__u32 seed = fold32(sum);
	if (nopts == 4)
		sum = bpf_csum_diff(0, 0, (__be32 *)th, sizeof(*th) + 4, seed);
	else if (nopts == 8)
		sum = bpf_csum_diff(0, 0, (__be32 *)th, sizeof(*th) + 8, seed);
	else
		sum = bpf_csum_diff(0, 0, (__be32 *)th, sizeof(*th) + 12, seed);
	th->check = fold(sum);
	return (int)(sizeof(*eth) + l3 + tcplen);
}

// passed_source reports whether src passed a challenge and is within its
// own rate and the rate of all passed sources together, which it then
// spends. The GCRAs are updated by compare-and-swap as the budget's is: a
// spoofed passed address whose SYNs RSS spreads over every CPU gets no
// more than its rate, and a CAS lost a few times in a row counts as over
// it. A source over the total has spent its own token for nothing: it
// falls back to the challenge budget like any other.
static __always_inline int passed_source(const struct config *c, const struct addr16 *src, __u64 now)
{
	if (!c->passed_interval || !(c->lists & L_PASSED))
		return 0;
	struct passed *v = bpf_map_lookup_elem(&xskgate_passed, src);
	if (!v || v->until <= now)
		return 0;
	if (!gcra_take(&v->tat, now, c->passed_interval, c->passed_tolerance))
		return 0;
	if (!c->passed_all_interval)
		return 1;
	__u32 one = 1;
	__u64 *all = bpf_map_lookup_elem(&xskgate_budget, &one);
	return all && gcra_take(all, now, c->passed_all_interval, c->passed_all_tolerance);
}

// cookie_answer answers the SYN in p within the challenge budget (free: a
// passed source's SYN, outside it). The budget is spent only once the
// answer is certain: a SYN the frame cannot answer goes to user space
// (ANS_NOFIT) without costing a cookie.
static __always_inline int cookie_answer(struct xdp_md *ctx, struct parsed *p, const struct config *c, __u64 now,
					 int free)
{
	__u32 zero = 0;
	__u64 *tat = bpf_map_lookup_elem(&xskgate_budget, &zero);
	if (!tat)
		return ANS_NOFIT;
	int limited = c->cookie_interval != 0 && !free;
	// Over budget: drop at the cost of one read, before any other work.
	if (limited && !budget_left(c, tat, now))
		return ANS_LIMITED;
	if (c->cookie_user) {
		if (limited && !budget_take(c, tat, now))
			return ANS_LIMITED;
		return ANS_USER;
	}

	struct tcphdr *th = p->tcp;
	struct syn s = {.sport = th->source, .dport = th->dest, .isn = bpf_ntohl(th->seq),
			.o = {.mss = p->v4 ? 536 : 1220, .wscale = WSCALE_NONE}};
	__builtin_memcpy(s.mac_src, p->eth->h_source, ETH_ALEN);
	__builtin_memcpy(s.mac_dst, p->eth->h_dest, ETH_ALEN);
	__u32 optlen = th->doff * 4 - sizeof(*th);
	if (optlen > 40)
		return ANS_NOFIT;
	parse_synopts(ctx, (__u32)((void *)(th + 1) - (void *)(long)ctx->data), optlen, &s.o);
	int v4 = p->v4;

	// Room for the largest SYN-ACK, whatever the SYN's size.
	__u32 l3 = v4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);
	if (grow(ctx, sizeof(struct ethhdr) + l3 + sizeof(struct tcphdr) + SYNACK_OPTS))
		return ANS_NOFIT;
	if (limited && !budget_take(c, tat, now))
		return ANS_LIMITED;

	// Cookie: mac:23 | counter:2 | mss:2 | wscale:4 | sack:1 (cookie.go).
	__u32 mssidx = 0;
	if (s.o.mss >= 1220)
		mssidx = 1;
	if (s.o.mss >= 1440)
		mssidx = 2;
	if (s.o.mss >= 1460)
		mssidx = 3;
	__u8 sack = c->sack && s.o.sack;
	__u32 ob = mssidx << 5 | (__u32)s.o.wscale << 1 | sack;
	__u64 ctr = (now - c->clock_base) / COOKIE_TICK;
	__u32 cookie = cookie_mac(c, &p->src, &p->dst, bpf_ntohs(s.sport), bpf_ntohs(s.dport), s.isn, ctr, ob) << 9 |
		       (__u32)(ctr & 3) << 7 | ob;
	__u8 ws = s.o.wscale == WSCALE_NONE ? WSCALE_NONE : c->wscale;
	int n = write_synack(ctx, v4, &p->src, &p->dst, &s, c, cookie, sack, ws);
	if (n < 0)
		return ANS_LIMITED; // cannot happen (the frame was grown); never forward a half-written frame
	__u32 len = (__u32)((long)ctx->data_end - (long)ctx->data);
	if ((__u32)n < len && bpf_xdp_adjust_tail(ctx, -(int)(len - (__u32)n)))
		return ANS_LIMITED; // shrinking cannot fail above ETH_HLEN
	return ANS_TX;
}

// first_line_verdict returns XDP_DROP, XDP_TX, or -1 (on to user space).
static __always_inline int first_line_verdict(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct config *c = bpf_map_lookup_elem(&xskgate_config, &zero);
	if (!c || !c->stages)
		return -1;
	struct parsed p = {};
	if (parse(ctx, &p)) {
		count(C_NOT_PARSED);
		return -1;
	}
	int s = stage(c, ST_ALLOW);
	if (s && (c->lists & L_ALLOW) && lpm_lookup(&p, &xskgate_allow4, &xskgate_allow6, &p.src)) {
		count(C_ALLOW_PASS);
		return -1;
	}
	s = stage(c, ST_BLOCK);
	if (s && (c->lists & L_BLOCK) && lpm_lookup(&p, &xskgate_block4, &xskgate_block6, &p.src)) {
		count(s == 1 ? C_BLOCK_DROP : C_BLOCK_WOULD);
		if (s == 1)
			return XDP_DROP;
	}
	s = stage(c, ST_PENALTY);
	if (s && (c->lists & L_PENALTY)) {
		__u64 *until = bpf_map_lookup_elem(&xskgate_penalty, &p.src);
		if (until && *until > bpf_ktime_get_ns()) {
			count(s == 1 ? C_PENALTY_DROP : C_PENALTY_WOULD);
			if (s == 1)
				return XDP_DROP;
		}
	}
	int so = stage(c, ST_OOS), sc = stage(c, ST_COOKIE);
	if (!so && !sc)
		return -1;
	struct scope *sp = lpm_lookup(&p, &xskgate_scope4, &xskgate_scope6, &p.dst);
	if (!sp)
		return -1;
	__u32 sflags = sp->flags;
	if (!sflags)
		return -1;
	__u8 flags = ((__u8 *)p.tcp)[13] & 0x17; // FIN SYN RST ACK
	if (flags == 0x02) { // a bare SYN
		if (sc && (sflags & SC_CHALLENGE)) {
			__sync_fetch_and_add(&sp->syns, 1);
			if (sc == 2 || (sflags & SC_MONITOR)) {
				count(C_COOKIE_WOULD);
				return -1;
			}
			__u64 now = bpf_ktime_get_ns();
			int free = passed_source(c, &p.src, now);
			switch (cookie_answer(ctx, &p, c, now, free)) {
			case ANS_TX:
				count(C_COOKIE_SENT);
				if (free)
					count(C_COOKIE_PASSED);
				return XDP_TX;
			case ANS_LIMITED:
				count(C_COOKIE_LIMITED);
				return XDP_DROP;
			case ANS_USER:
				count(C_COOKIE_TO_USER);
				if (free)
					count(C_COOKIE_PASSED);
				return -1;
			}
			count(C_COOKIE_NOFIT);
		}
		return -1;
	}
	if (so && (sflags & SC_OOS) && !(flags & 0x02)) {
		struct flowkey k = {};
		flowkey_of(&k, &p.src, &p.dst, p.tcp->source, p.tcp->dest, 0);
		if (!bpf_map_lookup_elem(&xskgate_flows, &k)) {
			// A cookie ACK is untracked by nature: with cookies live,
			// a valid one goes on to user space, which completes the
			// proxied handshake (and checks it again).
			if (sflags & SC_CHALLENGE && flags == 0x10 && cookie_ok(c, &p))
				return -1;
			__sync_fetch_and_add(&sp->oos, 1);
			if (so == 2 || (sflags & SC_MONITOR)) {
				count(C_OOS_WOULD);
				return -1;
			}
			count(C_OOS_DROP);
			return XDP_DROP;
		}
	}
	return -1;
}

// ---- the record and the redirect ----------------------------------------

static __always_inline int redirect(struct xdp_md *ctx)
{
	return bpf_redirect_map(&xskgate_xsks, ctx->rx_queue_index, XDP_PASS);
}

// write_record fills the record at rec, which ends where the frame starts.
static __always_inline void write_record(struct xdp_md *ctx, __u32 *rec, __u32 magic)
{
	__u32 q = ctx->rx_queue_index;
	__u32 seq = 0;
	__u32 *s = bpf_map_lookup_elem(&xskgate_seqs, &q);
	if (s) {
		// A plain increment, not an atomic: NAPI serialises a queue, and a
		// lost update is exactly what user space should be able to see if
		// it ever does not.
		seq = *s + 1;
		*s = seq;
	}
	rec[0] = magic;
	rec[1] = (__u32)((long)ctx->data_end - (long)(rec + 4)) + len_skew;
	rec[2] = seq;
	rec[3] = q;
}

// with_head prepends the record; a frame without room for it is dropped
// and counted (forwarding it without would make its first bytes
// ambiguous).
static __always_inline int with_head(struct xdp_md *ctx)
{
	if (bpf_xdp_adjust_head(ctx, -RECORD_SIZE)) {
		count(C_NO_HEADROOM);
		return XDP_DROP;
	}
	__u32 *rec = (void *)(long)ctx->data;
	if ((void *)(rec + 4) > (void *)(long)ctx->data_end) {
		count(C_NO_HEADROOM);
		return XDP_DROP;
	}
	write_record(ctx, rec, HEAD_MAGIC);
	return redirect(ctx);
}

// fast_flow reports whether the frame is a segment of an offloaded flow
// that the fast path carries: not a SYN, FIN or RST, which the tracker
// must see, nor one of a flow user space is taking back (draining).
static __always_inline int fast_flow(struct xdp_md *ctx)
{
	struct parsed p = {};
	if (parse(ctx, &p))
		return 0;
	if (((__u8 *)p.tcp)[13] & FAST_EXCLUDED)
		return 0;
	struct flowkey k = {};
	flowkey_of(&k, &p.src, &p.dst, p.tcp->source, p.tcp->dest, fast_path == FAST_INNER);
	struct fastval *v = bpf_map_lookup_elem(&xskgate_fast, &k);
	return v && !(v->flags & FV_DRAINING);
}

// first returns the first line's verdict, XDP_PASS for the fast path, or
// -1 (on to user space).
static __always_inline int first(struct xdp_md *ctx)
{
	if (first_line) {
		int v = first_line_verdict(ctx);
		if (v >= 0)
			return v;
	}
	if (fast_path && fast_flow(ctx))
		return XDP_PASS;
	return -1;
}

SEC("xdp")
int xskgate_meta(struct xdp_md *ctx)
{
	int v = first(ctx);
	if (v >= 0)
		return v;
	if (bpf_xdp_adjust_meta(ctx, -RECORD_SIZE)) {
		// The driver has no metadata support: carry the record in front.
		count(C_META_REFUSED);
		return with_head(ctx);
	}
	__u32 *rec = (void *)(long)ctx->data_meta;
	if ((void *)(rec + 4) > (void *)(long)ctx->data)
		return redirect(ctx);
	write_record(ctx, rec, META_MAGIC);
	return redirect(ctx);
}

SEC("xdp")
int xskgate_head(struct xdp_md *ctx)
{
	int v = first(ctx);
	if (v >= 0)
		return v;
	return with_head(ctx);
}

SEC("xdp")
int xskgate_none(struct xdp_md *ctx)
{
	int v = first(ctx);
	if (v >= 0)
		return v;
	return redirect(ctx);
}
