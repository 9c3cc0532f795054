package protect

import (
	"net/netip"
	"testing"
)

// FuzzCookie: a cookie made for a handshake validates for it, with the
// options it encoded; the same cookie with its value, the tuple, the
// client's ISN or its age tampered with (as the fuzz input says) is
// rejected. With a 23-bit MAC a forgery succeeds by chance once in about
// 8 million tries: an accepted tampered cookie must then be exactly such
// a MAC collision, never a decoding shortcut.
func FuzzCookie(f *testing.F) {
	f.Add(uint64(1), uint64(2), []byte{198, 18, 0, 1}, []byte{198, 18, 0, 2}, uint16(40000), uint16(80), uint32(7), uint16(1460), uint8(7), true, int64(5e9), uint8(0), uint32(1))
	f.Add(uint64(3), uint64(4), net6("2001:2::1"), net6("2001:2::2"), uint16(1), uint16(443), uint32(0xffffffff), uint16(536), uint8(15), false, int64(1e12), uint8(1), uint32(0))
	f.Add(uint64(5), uint64(6), []byte{198, 18, 0, 1}, []byte{198, 18, 0, 2}, uint16(2), uint16(3), uint32(9), uint16(1440), uint8(14), true, int64(0), uint8(2), uint32(0))
	f.Add(uint64(7), uint64(8), []byte{198, 18, 0, 1}, []byte{198, 18, 0, 2}, uint16(2), uint16(3), uint32(9), uint16(1220), uint8(0), false, int64(3e10), uint8(3), uint32(0))
	f.Fuzz(func(t *testing.T, k0, k1 uint64, src, dst []byte, sport, dport uint16, isn uint32, mss uint16, ws uint8, sack bool, now int64, how uint8, x uint32) {
		a, ok1 := netip.AddrFromSlice(src)
		b, ok2 := netip.AddrFromSlice(dst)
		if !ok1 || !ok2 || now < 0 || now > 1<<60 {
			return
		}
		k := sipKey{k0, k1}
		o := cookieOpts{mssIdx: mssIndex(mss), wscale: min(ws, 14), sack: sack}
		if ws >= 15 {
			o.wscale = wscaleNone
		}
		tp := tuple{a, b, sport, dport}
		c := k.makeCookie(&tp, isn, o, now)
		got, ok := k.checkCookie(&tp, isn, c, now)
		if !ok || got != o {
			t.Fatalf("fresh cookie %#x rejected or options %+v, want %+v", c, got, o)
		}
		// Tamper.
		tc, tt, tisn, tnow := c, tp, isn, now
		switch how % 5 {
		case 0:
			if x == 0 {
				x = 1
			}
			tc ^= x
		case 1:
			tt.srcPort ^= uint16(x) | 1
		case 2:
			tisn ^= x | 1
		case 3:
			tnow += int64(cookieMaxAge+1)*cookieTick + int64(x%uint32(cookieTick/1e6))*1e6 // too old
		case 4:
			bb := tt.dst.As16()
			bb[15] ^= byte(x) | 1
			tt.dst = netip.AddrFrom16(bb)
			if b.Is4() {
				tt.dst = tt.dst.Unmap()
			}
		}
		if _, ok := k.checkCookie(&tt, tisn, tc, tnow); ok {
			// Only a genuine 23-bit MAC collision may pass.
			cur := tnow / cookieTick
			lo := int64(tc >> 7 & 3)
			ctr := cur - (cur-lo)&3
			if k.cookieMAC(&tt, tisn, ctr, tc&0x7f) != tc>>9 {
				t.Fatalf("tampered cookie (%d) accepted without a MAC collision", how%5)
			}
		}
	})
}

func net6(s string) []byte {
	a := netip.MustParseAddr(s).As16()
	return a[:]
}
