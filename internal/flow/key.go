package flow

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// key is a normalised TCP 4-tuple: the endpoint that sorts lower (address,
// then port) comes first, so both directions of a connection give the same
// key. Addresses are held as 128-bit big-endian pairs; IPv4 uses the
// IPv4-mapped form, so ::ffff:a.b.c.d and a.b.c.d are the same endpoint.
// That is harmless: RFC 4291 §2.5.5.2 addresses never appear on the wire.
type key struct {
	addr  [4]uint64 // lo endpoint hi/lo words, hi endpoint hi/lo words
	ports uint32    // lo port << 16 | hi port
}

func addrWords(a netip.Addr) (uint64, uint64) {
	if a.Is4() {
		b := a.As4()
		return 0, 0xffff<<32 | uint64(binary.BigEndian.Uint32(b[:]))
	}
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

func wordsAddr(hi, lo uint64) netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	return netip.AddrFrom16(b).Unmap()
}

// makeKey normalises the segment's tuple. senderLo reports whether the
// segment's source is the key's first (lower) endpoint.
func makeKey(s *Segment) (k key, senderLo bool) {
	senderLo = k.set(s)
	return k, senderLo
}

// set is makeKey writing in place, which spares the hot paths a copy of
// the key through the stack.
func (k *key) set(s *Segment) (senderLo bool) {
	sh, sl := addrWords(s.Src)
	dh, dl := addrWords(s.Dst)
	switch {
	case sh != dh:
		senderLo = sh < dh
	case sl != dl:
		senderLo = sl < dl
	default:
		senderLo = s.SrcPort <= s.DstPort
	}
	if senderLo {
		k.addr[0], k.addr[1], k.addr[2], k.addr[3] = sh, sl, dh, dl
		k.ports = uint32(s.SrcPort)<<16 | uint32(s.DstPort)
	} else {
		k.addr[0], k.addr[1], k.addr[2], k.addr[3] = dh, dl, sh, sl
		k.ports = uint32(s.DstPort)<<16 | uint32(s.SrcPort)
	}
	return senderLo
}

// hasher is a keyed hash over the fixed 36-byte key, built from the 64x64→128
// multiply-and-fold ("mum") step of wyhash, the construction Go's own
// runtime map uses where AES is unavailable. Three multiplies hash a key in
// a few nanoseconds without allocating. The six secrets come from
// math/rand/v2's ChaCha8 source, seeded from the OS at start, so an attacker
// who chooses tuples cannot aim them at one index cluster (hash flooding)
// without learning the secrets. hash/maphash would be as safe but goes
// through a generic byte hash with more setup per call for a 36-byte key.
type hasher struct{ s [6]uint64 }

func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func (h *hasher) hash(k *key) uint64 {
	x := mum(k.addr[0]^h.s[0], k.addr[1]^h.s[1])
	y := mum(k.addr[2]^h.s[2], k.addr[3]^h.s[3])
	return mum(x^h.s[4]^uint64(k.ports), y^h.s[5])
}
