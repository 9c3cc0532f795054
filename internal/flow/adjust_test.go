package flow

import "testing"

// TestProxiedOf: a SYN-proxied flow is found from a segment of either
// direction, which ProxiedOf tells apart, with its offset and state; an
// unknown or expired flow is not found.
func TestProxiedOf(t *testing.T) {
	tb := newTable(t, Config{})
	cli := Segment{Src: addrN(1), Dst: server.addr, SrcPort: 40000, DstPort: 443, Flags: FlagACK, Dir: Inbound}
	srv := Segment{Src: server.addr, Dst: addrN(1), SrcPort: 443, DstPort: 40000, Flags: FlagACK, Dir: Outbound}
	if _, ok := tb.ProxiedOf(&cli, 100); ok {
		t.Fatal("found a flow before any was inserted")
	}
	v := tb.Insert(&cli, Open{State: StateSynSent, ClientISN: 7, ClientWScale: -1, ClientWindow: 100, SeqAdjust: 0xc00c1e}, 100)
	if !v.New {
		t.Fatal(v)
	}
	if !tb.SetSeqAdjust(&srv, 0x1234) {
		t.Fatal("SetSeqAdjust")
	}
	for _, tc := range []struct {
		s     *Segment
		reply bool
	}{{&cli, false}, {&srv, true}} {
		p, ok := tb.ProxiedOf(tc.s, 101)
		if !ok || p.Reply != tc.reply || p.SeqAdjust != 0x1234 || p.State != StateSynSent {
			t.Fatalf("%+v from %v: %+v %v", tc.s, tc.s.Dir, p, ok)
		}
	}
	if _, ok := tb.ProxiedOf(&cli, 100+uint32(DefaultTimeouts().SynSent.Seconds())+1); ok {
		t.Fatal("expired flow found")
	}
}
