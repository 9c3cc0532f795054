package protect

import (
	"testing"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/packet"
)

// FuzzInspect feeds arbitrary frames from both sides through an Inspector
// that challenges every SYN and drops every out-of-state segment: it must
// never panic, and whatever it transmits must fit the chunk and parse.
func FuzzInspect(f *testing.F) {
	f.Add(synFrom(cli4, 1, 1).frame(), false)
	f.Add(ackFlood(cli6, srv6, 3).frame(), false)
	f.Add(tseg{src: srv4, dst: cli4, sport: 80, dport: 1, seq: 9, ack: 2, flags: packet.SYN | packet.ACK, ws: 7, mss: 1460, fromServer: true}.frame(), true)
	f.Add(tseg{src: cli4, dst: srv4, sport: 1, dport: 80, seq: 2, ack: 10, flags: packet.ACK, ws: -1,
		sackBlocks: [][2]uint32{{1, 2}, {3, 4}}, payload: []byte("x")}.frame(), false)
	i, _ := newTestInspector(f, baseConfig(ModeMitigate))
	f.Fuzz(func(t *testing.T, frame []byte, inner bool) {
		side := engine.Outer
		if inner {
			side = engine.Inner
		}
		buf := make([]byte, len(frame), len(frame)+128)
		copy(buf, frame)
		pk := run(i, side, buf)
		if pk.Verdict == engine.Drop {
			return
		}
		if int(pk.Len) > cap(buf) || pk.Len == 0 {
			t.Fatalf("length %d outside the chunk (cap %d)", pk.Len, cap(buf))
		}
		if pk.Verdict == engine.Bounce {
			var p packet.Packet
			out := pk.Data[:pk.Len]
			if err := p.Parse(out); err != nil || !packet.VerifyTCPChecksum(&p, out) {
				t.Fatalf("bounced frame invalid: %v", err)
			}
		}
	})
}
