package packet

import "testing"

var errSink error

func TestParseDoesNotAllocate(t *testing.T) {
	frames := map[string][]byte{
		"ipv4 tcp syn":     frameIPv4TCPSYN(t),
		"ipv6 tcp ack":     frameIPv6TCPACK(t),
		"qinq":             frameQinQ(t),
		"ipv6 ext chain":   frameIPv6ExtChain(t),
		"icmpv6 nd":        frameICMPv6ND(t),
		"arp":              frameARP(t),
		"truncated eth":    make([]byte, 5),
		"bad tcp option":   tcpOpts(2, 3, 0, 1),
		"too many ext hdr": ipv6Ext(60, destOptsChain(9)),
		"bad udp len":      set(frameIPv4UDP(t), 38, 0, 7),
	}
	for name, f := range frames {
		t.Run(name, func(t *testing.T) {
			var p Packet
			if n := testing.AllocsPerRun(200, func() { errSink = p.Parse(f) }); n != 0 {
				t.Errorf("Parse allocates %v times per run (err %v)", n, errSink)
			}
		})
	}
	t.Run("returning every Error as error", func(t *testing.T) {
		for e := Error(1); e < NumErrors; e++ {
			ret := func() error { return e }
			if n := testing.AllocsPerRun(100, func() { errSink = ret() }); n != 0 {
				t.Errorf("%v: boxing allocates %v", e, n)
			}
			var n float64
			n = testing.AllocsPerRun(100, func() { _ = errSink.Error(); _ = ErrorName(e) })
			if n != 0 {
				t.Errorf("%v: Error()/Name() allocate %v", e, n)
			}
		}
	})
}
