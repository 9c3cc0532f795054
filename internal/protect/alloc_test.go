package protect

import (
	"encoding/binary"
	"os"
	"testing"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/packet"
	"github.com/xskgate/xskgate/internal/xdpprog"
)

// proxiedFrames are the frames of one SYN-proxied connection, built
// beforehand so that replaying them allocates nothing of the test's.
type proxiedFrames struct {
	syn, ack, probe, synAck, data, icmp []byte
}

func newProxiedFrames(t testing.TB, sport uint16) proxiedFrames {
	return proxiedFrames{
		// frag needed quoting the server's first data segment (seq set
		// once the cookie is known)
		icmp:   icmpFrame(t, false, router4, srv4, 3, 4, 1400, quotedSeg(t, srv4, cli4, 80, sport, 0, 1001, 0)),
		syn:    synFrom(cli4, sport, 1000).frame(),
		ack:    tseg{src: cli4, dst: srv4, sport: sport, dport: 80, seq: 1001, flags: packet.ACK, win: 500, ws: -1}.frame(),
		probe:  tseg{src: cli4, dst: srv4, sport: sport, dport: 80, seq: 1000, flags: packet.ACK, win: 500, ws: -1}.frame(),
		synAck: tseg{src: srv4, dst: cli4, sport: 80, dport: sport, seq: 7000, ack: 1001, flags: packet.SYN | packet.ACK, win: 65160, mss: 1460, ws: 7, sack: true, fromServer: true}.frame(),
		data:   tseg{src: cli4, dst: srv4, sport: sport, dport: 80, seq: 1001, flags: packet.ACK | packet.PSH, win: 500, ws: -1, payload: []byte("hello")}.frame(),
	}
}

// setAck stores ack in a built frame's TCP header and fixes its checksum.
func setAck(frame []byte, ack uint32) {
	l4 := 14 + 20
	binary.BigEndian.PutUint32(frame[l4+8:], ack)
	var p packet.Packet
	if p.Parse(frame) == nil {
		setTCPChecksum(frame[p.L4Off:p.L3Off+p.IPTotalLen], p.Src, p.Dst)
	}
}

// TestInspectAllocs pins zero allocations on the SYN proxy's path: the
// challenge, the cookie ACK, a zero-window probe turned into the SYN
// again, the server's SYN-ACK with the window update in a spare frame,
// translated data and an ICMP error quoting the server's segment.
func TestInspectAllocs(t *testing.T) {
	i, _ := newTestInspector(t, baseConfig(ModeMitigate))
	x := extraOf(i)
	const runs = 20
	conns := make([]proxiedFrames, runs+1)
	for k := range conns {
		conns[k] = newProxiedFrames(t, uint16(3000+k))
	}
	buf := make([]byte, 0, 2048)
	pkts := make([]engine.Packet, 1)
	one := func(side engine.Side, f []byte) *engine.Packet {
		buf = append(buf[:0], f...)
		pkts[0] = engine.Packet{Data: buf, Len: uint32(len(buf)), Verdict: engine.Forward}
		i.Inspect(0, side, pkts)
		return &pkts[0]
	}
	x.discard = true
	k := 0
	allocs := testing.AllocsPerRun(runs, func() {
		c := &conns[k]
		k++
		pk := one(engine.Outer, c.syn)
		cookie := binary.BigEndian.Uint32(pk.Data[14+20+4:])
		setAck(c.ack, cookie+1)
		one(engine.Outer, c.ack)
		setAck(c.probe, cookie+1)
		one(engine.Outer, c.probe) // the SYN again
		one(engine.Inner, c.synAck)
		setAck(c.data, cookie+1)
		if pk := one(engine.Outer, c.data); pk.Verdict != engine.Forward {
			t.Errorf("data: %v", pk.Verdict)
		}
		// The server's seq 7001 left the gate as cookie+1.
		msg := c.icmp[14+20:]
		binary.BigEndian.PutUint32(msg[8+20+4:], cookie+1)
		msg[2], msg[3] = 0, 0
		binary.BigEndian.PutUint16(msg[2:], packet.Checksum(msg, 0))
		one(engine.Outer, c.icmp)
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per proxied connection", allocs)
	}
	if st := i.Stats(); st.Proxy["window_update"] != runs+1 || x.n != runs+1 || st.Cookies["valid"] != runs+1 || st.Proxy["syn_resent"] != runs+1 ||
		st.Proxy["icmp_translated"] != runs+1 {
		t.Fatalf("%+v %+v", st.Proxy, st.Cookies)
	}
}

// TestInspectAllocsFastPath pins the fast path's allocations (root: the
// map is a kernel map): none per packet, and per connection only the
// boxing of the batch's slices into cilium/ebpf's BatchUpdate and
// BatchDelete arguments (3: keys and values to offload, keys to release).
// A connection is its handshake, the segment that offloads the flow (one
// map update per worker batch) and the FIN that takes it back (one
// delete).
func TestInspectAllocsFastPath(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create the fast path's map")
	}
	fp, err := xdpprog.LoadFastPath(1, 1, 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	cfg := baseConfig(ModeMitigate)
	for k := range cfg.Rules {
		cfg.Rules[k].SynFlood = SynFloodRule{Rate: 1e6, Burst: 1e6}
	}
	i, _ := newTestInspector(t, cfg)
	i.SetFastPath(fp)
	const runs = 20
	type conn struct{ syn, synAck, ack, data, fin []byte }
	conns := make([]conn, runs+2) // AllocsPerRun's warm-up, the runs, the per-packet check
	for k := range conns {
		sport := uint16(3000 + k)
		conns[k] = conn{
			syn:    synFrom(cli4, sport, 1000).frame(),
			synAck: tseg{src: srv4, dst: cli4, sport: 80, dport: sport, seq: 7000, ack: 1001, flags: packet.SYN | packet.ACK, win: 65160, mss: 1460, ws: 7, sack: true, fromServer: true}.frame(),
			ack:    tseg{src: cli4, dst: srv4, sport: sport, dport: 80, seq: 1001, ack: 7001, flags: packet.ACK, win: 500, ws: -1}.frame(),
			data:   tseg{src: cli4, dst: srv4, sport: sport, dport: 80, seq: 1001, ack: 7001, flags: packet.ACK | packet.PSH, win: 500, ws: -1, payload: []byte("hello")}.frame(),
			fin:    tseg{src: cli4, dst: srv4, sport: sport, dport: 80, seq: 1001, ack: 7001, flags: packet.ACK | packet.FIN, win: 500, ws: -1}.frame(),
		}
	}
	buf := make([]byte, 0, 2048)
	pkts := make([]engine.Packet, 1)
	one := func(side engine.Side, f []byte) {
		buf = append(buf[:0], f...)
		pkts[0] = engine.Packet{Data: buf, Len: uint32(len(buf)), Verdict: engine.Forward}
		i.Inspect(0, side, pkts)
		if pkts[0].Verdict != engine.Forward {
			t.Errorf("verdict %v", pkts[0].Verdict)
		}
	}
	k := 0
	allocs := testing.AllocsPerRun(runs, func() {
		c := &conns[k]
		k++
		one(engine.Outer, c.syn)
		one(engine.Inner, c.synAck)
		one(engine.Outer, c.ack) // established: offloaded
		one(engine.Outer, c.fin) // taken back
	})
	st, _ := i.FastPathStats()
	if st.Offloaded != runs+1 || st.Released != runs+1 || st.Errors != 0 {
		t.Fatalf("fast path %+v: want %d offloaded and released", st, runs+1)
	}
	if allocs > 3 {
		t.Fatalf("%.1f allocations per connection, want at most 3", allocs)
	}
	// Per packet: segments of an offloaded flow that still reach user
	// space (in flight when it was offloaded).
	c := &conns[runs+1]
	one(engine.Outer, c.syn)
	one(engine.Inner, c.synAck)
	one(engine.Outer, c.ack)
	if st, _ := i.FastPathStats(); st.Offloaded != runs+2 {
		t.Fatalf("fast path %+v: the last flow was not offloaded", st)
	}
	if allocs := testing.AllocsPerRun(100, func() { one(engine.Outer, c.data) }); allocs != 0 {
		t.Fatalf("%.1f allocations per segment of an offloaded flow", allocs)
	}
}
