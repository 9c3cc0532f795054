package flow

import (
	"net/netip"
	"sync"
	"testing"
	"time"
	"unsafe"
)

func TestPickup(t *testing.T) {
	midstream := func(x *conn) Verdict {
		x.cNxt, x.sNxt = 7_000_000, 9_000_000
		return x.send(fromC, FlagACK|FlagPSH, 500)
	}
	t.Run("strict", func(t *testing.T) {
		x := newConn(t, newTable(t, Config{}))
		if v := midstream(x); v.Action != Drop || v.Reason != ReasonNotFound {
			t.Fatalf("%+v", v)
		}
	})
	for _, cfg := range []Config{{PickupUntil: 1000 + 60}, {Loose: true}} {
		x := newConn(t, newTable(t, cfg))
		if v := midstream(x); v.Action != Pass || !v.New || v.State != StateEstablished {
			t.Fatalf("%+v: pickup: %+v", cfg, v)
		}
		// Liberal until the other side is seen: even a wild segment passes.
		wild := x.seg(fromC, FlagACK, 0)
		wild.Seq += 1 << 31
		if v := x.t.Track(wild, x.now); v.Action != Pass {
			t.Fatalf("liberal phase: %+v", v)
		}
		for i := 0; i < 5; i++ {
			x.must(fromS, FlagACK|FlagPSH, 1000, StateEstablished, ReasonOk)
			x.must(fromC, FlagACK|FlagPSH, 300, StateEstablished, ReasonOk)
		}
		// Both directions seen: ACKs of unseen data are caught again.
		bad := x.seg(fromS, FlagACK, 0)
		bad.Ack += 1 << 20
		if v := x.t.Track(bad, x.now); v.Reason != ReasonOutOfSequence {
			t.Fatalf("%+v: strict after pickup: %+v", cfg, v)
		}
		var fi FlowInfo
		x.t.Range(x.now, func(f FlowInfo) bool { fi = f; return true })
		if !fi.PickedUp || !fi.Assured || fi.Src != client.addr || fi.Dir != Inbound || fi.Packets != [2]uint32{7, 6} {
			t.Fatalf("flow info %+v", fi)
		}
	}
	t.Run("grace ends", func(t *testing.T) {
		tb := newTable(t, Config{PickupUntil: 1060})
		x := newConn(t, tb)
		x.now = 1060
		if v := midstream(x); v.Reason != ReasonNotFound {
			t.Fatalf("after grace: %+v", v)
		}
		tb.SetPickupUntil(2000)
		if v := midstream(x); !v.New {
			t.Fatalf("grace reopened: %+v", v)
		}
	})
	t.Run("unanswered pickup times out early", func(t *testing.T) {
		x := newConn(t, newTable(t, Config{Loose: true}))
		midstream(x)
		x.now += 300
		if _, ok := x.state(); ok {
			t.Fatal("unanswered pickup kept beyond the unacknowledged timeout")
		}
	})
}

func TestTimeouts(t *testing.T) {
	to := Timeouts{
		SynSent: 11 * time.Second, SynRecv: 12 * time.Second, Established: 13 * time.Second,
		FinWait: 14 * time.Second, CloseWait: 15 * time.Second, LastAck: 16 * time.Second,
		TimeWait: 17 * time.Second, Close: 18 * time.Second, SynSent2: 19 * time.Second,
		Unacknowledged: 10 * time.Second,
	}
	def := DefaultTimeouts()
	tests := []struct {
		state State
		cfg   Timeouts
		want  uint32
	}{
		{StateSynSent, Timeouts{}, 120},
		{StateSynRecv, Timeouts{}, 60},
		{StateEstablished, Timeouts{}, 5 * 86400},
		{StateFinWait, Timeouts{}, 120},
		{StateCloseWait, Timeouts{}, 60},
		{StateLastAck, Timeouts{}, 30},
		{StateTimeWait, Timeouts{}, 120},
		{StateClose, Timeouts{}, 10},
		{StateSynSent2, Timeouts{}, 120},
		{StateSynSent, to, 11},
		{StateSynRecv, to, 12},
		{StateEstablished, to, 13},
		{StateFinWait, to, 10}, // the FIN is not yet acknowledged
		{StateCloseWait, to, 15},
		{StateLastAck, to, 10},
		{StateTimeWait, to, 17},
		{StateClose, to, 18},
		// The reply SYN of a simultaneous open does not refresh the timer
		// (tcp_packet: SYN in SYN_SENT before SEEN_REPLY).
		{StateSynSent2, to, 11},
	}
	if def.Established != 5*24*time.Hour || def.Unacknowledged != 5*time.Minute {
		t.Fatalf("defaults %+v", def)
	}
	for _, tc := range tests {
		t.Run(tc.state.String(), func(t *testing.T) {
			x := newConn(t, newTable(t, Config{Timeouts: tc.cfg}))
			for _, st := range setups[tc.state] {
				x.send(st.fromClient, st.flags, 0)
			}
			if s, _ := x.state(); s != tc.state {
				t.Fatalf("setup: %v", s)
			}
			start := x.now
			x.now = start + tc.want - 1
			if _, ok := x.state(); !ok {
				t.Fatalf("expired before %d s", tc.want)
			}
			x.now = start + tc.want
			if _, ok := x.state(); ok {
				t.Fatalf("alive after %d s", tc.want)
			}
			// Track removes it lazily; a non-SYN then finds nothing.
			if v := x.send(fromC, FlagACK, 0); v.Reason != ReasonNotFound {
				t.Fatalf("after expiry: %+v", v)
			}
			if st := x.t.Stats(); st.Flows != 0 || st.Expired != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
	// Data in flight shortens an ESTABLISHED flow's timeout to UNACK.
	x := newConn(t, newTable(t, Config{}))
	x.handshake()
	x.must(fromC, FlagACK|FlagPSH, 100, StateEstablished, ReasonOk)
	x.now += 300
	if _, ok := x.state(); ok {
		t.Fatal("unacknowledged data did not shorten the timeout")
	}
	if _, err := New(Config{Capacity: 1, Timeouts: Timeouts{Close: time.Millisecond}}); err == nil {
		t.Fatal("sub-second timeout accepted")
	}
	if _, err := New(Config{}); err == nil {
		t.Fatal("zero capacity accepted")
	}
}

// addrN makes distinct client addresses.
func addrN(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func synFrom(i int) *Segment {
	return &Segment{Src: addrN(i), Dst: server.addr, SrcPort: uint16(1024 + i%50000), DstPort: 443,
		Flags: FlagSYN, Seq: uint32(i) * 7919, Window: 65535, WScale: 7, Dir: Inbound}
}

func TestExpireGC(t *testing.T) {
	const n = 5000
	tb := newTable(t, Config{Capacity: n})
	for round := 0; round < 3; round++ {
		now := uint32(1000 + round*1000)
		for i := 0; i < n; i++ {
			if v := tb.Track(synFrom(i+round*n), now); !v.New {
				t.Fatalf("round %d flow %d: %+v", round, i, v)
			}
		}
		if tb.Len() != n {
			t.Fatalf("len %d", tb.Len())
		}
		if got := tb.Expire(now+119, tb.Capacity()); got != 0 {
			t.Fatalf("expired %d early", got)
		}
		got := 0
		for i := 0; i < 100 && got < n; i++ { // incremental, bounded steps
			got += tb.Expire(now+120, 100)
		}
		if got != n || tb.Len() != 0 {
			t.Fatalf("round %d: reclaimed %d, len %d", round, got, tb.Len())
		}
	}
	st := tb.Stats()
	if st.Inserts != 3*n || st.Expired != 3*n || st.TableFull != 0 || st.States[StateSynSent] != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTableFull(t *testing.T) {
	const n = 8
	tb := newTable(t, Config{Capacity: n})
	if tb.Capacity() != n {
		t.Fatalf("capacity %d", tb.Capacity())
	}
	conns := make([]*conn, n)
	for i := range conns {
		x := newConn(t, tb)
		x.c.addr = addrN(i)
		x.handshake()
		x.must(fromS, FlagACK, 0, StateEstablished, ReasonOk)
		conns[i] = x
	}
	// All assured and open: the new flow is refused.
	if v := tb.Track(synFrom(100), 1000); v.Reason != ReasonTableFull || v.Action != Drop {
		t.Fatalf("full: %+v", v)
	}
	// A closing flow is evicted to make room.
	conns[3].must(fromC, FlagFIN|FlagACK, 0, StateFinWait, ReasonOk)
	if v := tb.Track(synFrom(100), 1000); !v.New {
		t.Fatalf("evict closing: %+v", v)
	}
	if _, ok := conns[3].state(); ok {
		t.Fatal("closing flow survived")
	}
	// A half-open flow (what a SYN flood leaves) is evicted next.
	if v := tb.Track(synFrom(101), 1000); !v.New {
		t.Fatalf("evict unassured: %+v", v)
	}
	if s, ok := tb.Lookup(synFrom(100), 1000); ok {
		t.Fatalf("half-open flow survived: %v", s)
	}
	for i, x := range conns {
		if _, ok := x.state(); ok == (i == 3) {
			t.Fatalf("flow %d present=%v", i, ok)
		}
	}
	st := tb.Stats()
	if st.TableFull != 1 || st.Evictions != 2 || st.Flows != n {
		t.Fatalf("stats %+v", st)
	}
	// Expired entries are reclaimed first, counted as expired.
	if v := tb.Track(synFrom(102), 1000+5*86400+1); !v.New {
		t.Fatalf("reuse expired: %+v", v)
	}
}

func TestMemoryPerFlow(t *testing.T) {
	if got := unsafe.Sizeof(entry{}); got != 104 {
		t.Fatalf("entry is %d bytes, want 104", got)
	}
	if got := unsafe.Sizeof(window{}); got != 16 {
		t.Fatalf("window is %d bytes", got)
	}
	for _, c := range []int{1000, 1 << 16, 1 << 20} {
		tb := newTable(t, Config{Capacity: c})
		per := tb.MemoryPerFlow()
		t.Logf("capacity %d: %d shards, %d entries, %.1f B/flow", c, len(tb.shards), tb.Capacity(), per)
		if per > 128 {
			t.Fatalf("capacity %d: %.1f bytes per flow", c, per)
		}
	}
}

// TestFillsToCapacity: the shard headroom lets a uniformly hashed load
// reach Capacity without refusals.
func TestFillsToCapacity(t *testing.T) {
	const n = 1 << 17
	tb := newTable(t, Config{Capacity: n})
	for i := 0; i < n; i++ {
		if v := tb.Track(synFrom(i), 1000); !v.New {
			t.Fatalf("flow %d: %+v", i, v)
		}
	}
	if tb.Len() != n {
		t.Fatalf("len %d", tb.Len())
	}
	for i := 0; i < n; i++ {
		if s, ok := tb.Lookup(synFrom(i), 1000); !ok || s != StateSynSent {
			t.Fatalf("flow %d lost", i)
		}
	}
}

// TestConcurrent runs many connections through a full life with their
// segments spread over several workers: at every step each connection's
// next segment goes to a different worker than the last, so the two
// directions of a connection are handled by different goroutines, while
// other goroutines read, list and sweep the table.
func TestConcurrent(t *testing.T) {
	const flows, workers = 2000, 4
	tb := newTable(t, Config{Capacity: flows})
	type step struct {
		fromClient bool
		flags      uint8
		n          uint32
	}
	script := []step{
		{fromC, FlagSYN, 0}, {fromS, FlagSYN | FlagACK, 0}, {fromC, FlagACK, 0},
		{fromC, FlagACK | FlagPSH, 100}, {fromS, FlagACK | FlagPSH, 1000}, {fromC, FlagACK, 0},
		{fromS, FlagFIN | FlagACK, 0}, {fromC, FlagACK, 0}, {fromC, FlagFIN | FlagACK, 0}, {fromS, FlagACK, 0},
	}
	conns := make([]*conn, flows)
	for i := range conns {
		x := newConn(t, tb)
		x.c.addr, x.c.port = addrN(i), uint16(2000+i)
		x.cISN, x.sISN = uint32(i)*1_000_003, ^uint32(i)*999_983
		x.cNxt, x.sNxt = x.cISN, x.sISN
		conns[i] = x
	}
	probes := make([]*Segment, 0, flows/97+1)
	for i := 0; i < flows; i += 97 {
		probes = append(probes, conns[i].seg(fromC, FlagACK, 0))
	}
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { // readers and housekeeping
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, p := range probes {
				tb.Lookup(p, 1000)
			}
			tb.Expire(1000, 512)
			tb.Stats()
			tb.Range(1000, func(FlowInfo) bool { return true })
		}
	}()
	errs := make(chan string, workers)
	for si, st := range script {
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := (w + si) % workers; i < flows; i += workers {
					x := conns[i]
					s := x.seg(st.fromClient, st.flags, st.n)
					if v := tb.Track(s, 1000); v.Action != Pass || v.Reason != ReasonOk {
						select {
						case errs <- "flow " + addrN(i).String() + " step " + string(rune('0'+si)) + ": " + v.Reason.String():
						default:
						}
						return
					}
					end := segEnd(s)
					if st.fromClient {
						x.cNxt = end
					} else {
						x.sNxt = end
					}
				}
			}()
		}
		wg.Wait()
		select {
		case e := <-errs:
			t.Fatal(e)
		default:
		}
	}
	close(stop)
	bg.Wait()
	st := tb.Stats()
	if st.Flows != flows || st.States[StateTimeWait] != flows || st.Inserts != flows {
		t.Fatalf("stats %+v", st)
	}
	for i, x := range conns {
		if s, ok := x.state(); !ok || s != StateTimeWait {
			t.Fatalf("flow %d: %v %v", i, s, ok)
		}
	}
}

func TestRange(t *testing.T) {
	tb := newTable(t, Config{})
	x := newConn(t, tb)
	x.handshake()
	x.now += 5
	x.must(fromS, FlagACK|FlagPSH, 10, StateEstablished, ReasonOk)
	var got []FlowInfo
	tb.Range(x.now+1, func(f FlowInfo) bool { got = append(got, f); return true })
	want := FlowInfo{Src: client.addr, Dst: server.addr, SrcPort: client.port, DstPort: server.port,
		Dir: Inbound, State: StateEstablished, Age: 6, ExpiresIn: 299, Packets: [2]uint32{2, 2}, Assured: true}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	// Early stop.
	y := newConn(t, tb)
	y.c.port++
	y.handshake()
	n := 0
	tb.Range(x.now, func(FlowInfo) bool { n++; return false })
	if n != 1 {
		t.Fatalf("Range did not stop: %d", n)
	}
}

func TestStringsStable(t *testing.T) {
	for r := Reason(0); r < numReasons; r++ {
		if r.String() == "" || r.String() == "unknown" {
			t.Errorf("reason %d unnamed", r)
		}
	}
	if ReasonOutOfSequence.String() != "out_of_sequence" || StateSynSent2.String() != "syn_sent2" ||
		ReasonTableFull.String() != "table_full" || StateTimeWait.Phase() != "closed" {
		t.Error("label changed")
	}
}
