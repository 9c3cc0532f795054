package flow

import (
	"net/netip"
	"testing"
)

// FuzzTrack drives the table with segments in both directions of four
// flows, decoded from the fuzz input (8 bytes each: flow, direction and
// flags, sequence and ack steps, window, payload, clock step). Whatever
// arrives: no panic, the table never holds more flows than its capacity
// nor a different count than it lists, per-state counts add up, and right
// after Track reports a live state, the flow is found from both sides in
// that state.
func FuzzTrack(f *testing.F) {
	f.Add([]byte{0x00, FlagSYN, 0, 0, 255, 0, 0, 0, 0x10, FlagSYN | FlagACK, 0, 1, 255, 0, 0, 0, 0x00, FlagACK, 1, 1, 255, 0, 0, 0})
	f.Add([]byte{0x01, FlagACK, 9, 9, 1, 5, 1, 0, 0x11, FlagRST, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x02, FlagSYN, 0, 0, 255, 0, 0, 0, 0x02, FlagFIN | FlagACK, 1, 0, 255, 0, 0, 0, 0x12, FlagFIN | FlagACK, 0, 2, 255, 0, 200, 0})
	f.Add([]byte{0x03, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 8*512 {
			return
		}
		const capacity = 64
		tb, err := New(Config{Capacity: capacity, Loose: len(b)%2 == 1})
		if err != nil {
			t.Fatal(err)
		}
		clients := [4]netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.3"),
			netip.MustParseAddr("2001:2::1"), netip.MustParseAddr("2001:2::3")}
		servers := [4]netip.Addr{netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.2"),
			netip.MustParseAddr("2001:2::2"), netip.MustParseAddr("2001:2::2")}
		var seq, ack [4][2]uint32
		now := uint32(1)
		for ; len(b) >= 8; b = b[8:] {
			fl, dir := int(b[0]&3), int(b[0]>>4&1)
			seq[fl][dir] += uint32(b[2]) * 97
			ack[fl][dir] += uint32(b[3]) * 89
			s := Segment{Src: clients[fl], Dst: servers[fl], SrcPort: 40000 + uint16(fl), DstPort: 443,
				Flags: b[1], Seq: seq[fl][dir], Ack: ack[fl][dir], Window: uint16(b[4]) << 8, WScale: int8(b[4]%16) - 1,
				SACKPerm: b[4]&1 != 0, PayloadLen: uint32(b[5]) * 11, Dir: Inbound}
			if dir == 1 {
				s.Src, s.Dst, s.SrcPort, s.DstPort, s.Dir = s.Dst, s.Src, s.DstPort, s.SrcPort, Outbound
			}
			now += uint32(b[6])
			v := tb.Track(&s, now)
			if v.State != StateNone && v.State != StateClose {
				for _, probe := range []Segment{s, {Src: s.Dst, Dst: s.Src, SrcPort: s.DstPort, DstPort: s.SrcPort, Flags: FlagACK}} {
					st, ok := tb.Lookup(&probe, now)
					if !ok || st != v.State {
						t.Fatalf("after Track -> %+v, Lookup(%v:%d -> %v:%d) = %v, %v", v, probe.Src, probe.SrcPort, probe.Dst, probe.DstPort, st, ok)
					}
				}
			}
			if b[7]&1 != 0 {
				tb.Expire(now, int(b[7]))
			}
		}
		st := tb.Stats()
		n := 0
		tb.Range(now, func(FlowInfo) bool { n++; return true })
		sum := 0
		for s, c := range st.States {
			if State(s) != StateNone {
				sum += c
			}
		}
		if st.Flows > capacity || tb.Len() != st.Flows || sum != st.Flows || n > st.Flows {
			t.Fatalf("stats %+v, Len %d, listed %d, per-state sum %d", st, tb.Len(), n, sum)
		}
	})
}
