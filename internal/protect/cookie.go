package protect

import (
	"encoding/binary"
	"net/netip"
)

// Cookie layout (the ISN of the proxy's SYN-ACK), most significant first:
//
//	mac:23 | counter:2 | mss:2 | wscale:4 | sack:1
//
// The client's options travel in the cookie itself, not in TSval as with
// Linux SYNPROXY: the proxy does not offer timestamps (it has no per-flow
// slot for a timestamp offset, and a server TSval lower than the proxy's
// would trip the client's PAWS check), so the sequence number is the only
// place left. mac is SipHash-2-4 over the 4-tuple, the client's ISN, the
// full time counter and the option bits, truncated to 23 bits: a blind
// forger needs about 4 million ACKs per hit, and a hit only earns one SYN
// to the server. The counter ticks every cookieTick; a cookie is valid for
// the tick it was made in and the next two (32 to 48 s), enough for the
// client's ACK and its retransmissions.
const (
	cookieTick    = int64(16e9) // ns
	cookieMaxAge  = 2           // ticks
	cookieMACBits = 23
	wscaleNone    = 15
)

// mssTable are the MSS values a cookie can carry: the largest entry not
// above the client's MSS is encoded (as Linux's msstab: common
// Ethernet/IPv6/tunnel MSSes).
var mssTable = [4]uint16{536, 1220, 1440, 1460}

func mssIndex(mss uint16) uint32 {
	i := uint32(0)
	for j, m := range mssTable {
		if m <= mss {
			i = uint32(j)
		}
	}
	return i
}

// cookieOpts are the client SYN options the cookie keeps.
type cookieOpts struct {
	mssIdx uint32 // index into mssTable
	wscale uint8  // 0..14, or wscaleNone
	sack   bool
}

func (o cookieOpts) bits() uint32 {
	b := o.mssIdx<<5 | uint32(o.wscale)<<1
	if o.sack {
		b |= 1
	}
	return b
}

func optsFromBits(b uint32) cookieOpts {
	return cookieOpts{mssIdx: b >> 5 & 3, wscale: uint8(b >> 1 & 0xf), sack: b&1 != 0}
}

// tuple is the client→server 4-tuple of a handshake.
type tuple struct {
	src, dst         netip.Addr
	srcPort, dstPort uint16
}

func addrWords(a netip.Addr) (uint64, uint64) {
	b := a.As16() // IPv4 becomes ::ffff:a.b.c.d, distinct from any IPv6 peer we see
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

func (k sipKey) cookieMAC(t *tuple, isn uint32, counter int64, optBits uint32) uint32 {
	var m [6]uint64
	m[0], m[1] = addrWords(t.src)
	m[2], m[3] = addrWords(t.dst)
	m[4] = uint64(t.srcPort)<<48 | uint64(t.dstPort)<<32 | uint64(isn)
	m[5] = uint64(counter)<<8 | uint64(optBits)
	return uint32(k.sum(m[:])) & (1<<cookieMACBits - 1)
}

// makeCookie returns the ISN for the SYN-ACK answering a SYN with ISN isn
// on t at time now (ns).
func (k sipKey) makeCookie(t *tuple, isn uint32, o cookieOpts, now int64) uint32 {
	c := now / cookieTick
	ob := o.bits()
	return k.cookieMAC(t, isn, c, ob)<<9 | uint32(c&3)<<7 | ob
}

// checkCookie validates the cookie cookie (the ACK's ack-1) for a client
// whose ISN was isn (the ACK's seq-1).
func (k sipKey) checkCookie(t *tuple, isn, cookie uint32, now int64) (cookieOpts, bool) {
	cur := now / cookieTick
	lo := int64(cookie >> 7 & 3)
	c := cur - (cur-lo)&3 // the latest counter value with those low bits
	if cur-c > cookieMaxAge || c < 0 {
		return cookieOpts{}, false
	}
	ob := cookie & 0x7f
	o := optsFromBits(ob)
	if o.wscale > 14 && o.wscale != wscaleNone {
		return cookieOpts{}, false
	}
	if k.cookieMAC(t, isn, c, ob) != cookie>>9 {
		return cookieOpts{}, false
	}
	return o, true
}
