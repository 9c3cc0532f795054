package flow

import (
	"net/netip"
	"testing"
)

func TestHandshakeDataClose(t *testing.T) {
	tests := []struct {
		name  string
		close func(x *conn)
	}{
		{"client closes first", func(x *conn) {
			x.must(fromC, FlagFIN|FlagACK, 0, StateFinWait, ReasonOk)
			x.must(fromS, FlagACK, 0, StateCloseWait, ReasonOk)
			x.must(fromS, FlagFIN|FlagACK|FlagPSH, 10, StateLastAck, ReasonOk)
			x.must(fromC, FlagACK, 0, StateTimeWait, ReasonOk)
		}},
		{"server closes first", func(x *conn) {
			x.must(fromS, FlagFIN|FlagACK, 0, StateFinWait, ReasonOk)
			x.must(fromC, FlagACK, 0, StateCloseWait, ReasonOk)
			x.must(fromC, FlagFIN|FlagACK, 0, StateLastAck, ReasonOk)
			x.must(fromS, FlagACK, 0, StateTimeWait, ReasonOk)
		}},
		{"FIN crossing", func(x *conn) {
			x.must(fromC, FlagFIN|FlagACK, 0, StateFinWait, ReasonOk)
			x.must(fromS, FlagFIN|FlagACK, 0, StateLastAck, ReasonOk)
			x.must(fromC, FlagACK, 0, StateTimeWait, ReasonOk)
			x.must(fromS, FlagACK, 0, StateTimeWait, ReasonOk)
		}},
		{"client RST", func(x *conn) {
			x.must(fromC, FlagRST|FlagACK, 0, StateClose, ReasonOk)
			x.must(fromS, FlagACK|FlagPSH, 100, StateClose, ReasonAlreadyClosed)
		}},
		{"server RST", func(x *conn) {
			x.must(fromS, FlagRST, 0, StateClose, ReasonOk)
			x.must(fromC, FlagACK, 0, StateClose, ReasonAlreadyClosed)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := newConn(t, newTable(t, Config{}))
			x.handshake()
			for i := 0; i < 20; i++ {
				x.must(fromC, FlagACK|FlagPSH, 1460, StateEstablished, ReasonOk)
				x.must(fromS, FlagACK, 0, StateEstablished, ReasonOk)
				x.must(fromS, FlagACK|FlagPSH, 3000, StateEstablished, ReasonOk)
				x.must(fromC, FlagACK, 0, StateEstablished, ReasonOk)
			}
			tc.close(x)
			st := x.t.Stats()
			if st.Flows != 1 || st.States[st0(x)] != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func st0(x *conn) State { s, _ := x.state(); return s }

func TestTimeWaitRejectsNewData(t *testing.T) {
	x := newConn(t, newTable(t, Config{}))
	x.handshake()
	x.must(fromC, FlagFIN|FlagACK, 0, StateFinWait, ReasonOk)
	x.must(fromS, FlagFIN|FlagACK, 0, StateLastAck, ReasonOk)
	x.must(fromC, FlagACK, 0, StateTimeWait, ReasonOk)
	x.must(fromS, FlagACK|FlagPSH, 10, StateTimeWait, ReasonAlreadyClosed)
	// A retransmitted last ACK is what TIME_WAIT exists for.
	x.must(fromC, FlagACK, 0, StateTimeWait, ReasonOk)
}

// TestHalfCloseRetransmittedFIN: the server closes first while the client
// still sends, and retransmits its FIN (a tail loss probe, 2 RTTs later)
// before the client acks it. conntrack's table would take that FIN for the
// client's and the server's next ACK for the last one, reaching TIME_WAIT,
// where the client's data would be refused as already closed. The close
// completes only with the client's FIN and the server's ACK of it.
func TestHalfCloseRetransmittedFIN(t *testing.T) {
	x := newConn(t, newTable(t, Config{}))
	x.handshake()
	x.must(fromS, FlagFIN|FlagACK|FlagPSH, 688, StateFinWait, ReasonOk)
	// The client acks older server data: the FIN is still in flight.
	s := x.seg(fromC, FlagACK, 0)
	s.Ack -= 689
	if v := x.t.Track(s, x.now); v.State != StateCloseWait || v.Reason != ReasonOk {
		t.Fatalf("client ACK: %+v", v)
	}
	// The tail loss probe: the same FIN again.
	s = x.seg(fromS, FlagFIN|FlagACK|FlagPSH, 688)
	s.Seq -= 689
	if v := x.t.Track(s, x.now); v.State != StateCloseWait || v.Action != Pass {
		t.Fatalf("retransmitted FIN: %+v", v)
	}
	for range 10 {
		x.must(fromS, FlagACK, 0, StateCloseWait, ReasonOk)
		x.must(fromC, FlagACK|FlagPSH, 1428, StateCloseWait, ReasonOk)
	}
	x.must(fromC, FlagFIN|FlagACK, 0, StateLastAck, ReasonOk)
	// The server acks data before the FIN: the client may yet retransmit.
	s = x.seg(fromS, FlagACK, 0)
	s.Ack -= 1429
	if v := x.t.Track(s, x.now); v.State != StateLastAck || v.Action != Pass {
		t.Fatalf("partial ACK in LAST_ACK: %+v", v)
	}
	s = x.seg(fromC, FlagACK|FlagPSH, 1428)
	s.Seq -= 1429
	if v := x.t.Track(s, x.now); v.State != StateLastAck || v.Action != Pass {
		t.Fatalf("client retransmission in LAST_ACK: %+v", v)
	}
	x.must(fromS, FlagACK, 0, StateTimeWait, ReasonOk)
	x.must(fromC, FlagACK|FlagPSH, 10, StateTimeWait, ReasonAlreadyClosed)
}

func TestSimultaneousOpen(t *testing.T) {
	for _, lastFromClient := range []bool{true, false} {
		x := newConn(t, newTable(t, Config{}))
		x.must(fromC, FlagSYN, 0, StateSynSent, ReasonOk)
		x.must(fromS, FlagSYN, 0, StateSynSent2, ReasonOk)
		x.must(fromC, FlagSYN|FlagACK, 0, StateSynRecv, ReasonOk)
		x.must(fromS, FlagSYN|FlagACK, 0, StateSynRecv, ReasonIgnored)
		x.must(lastFromClient, FlagACK, 0, StateEstablished, ReasonOk)
		x.must(!lastFromClient, FlagACK|FlagPSH, 100, StateEstablished, ReasonOk)
	}
}

func TestRetransmittedSYN(t *testing.T) {
	x := newConn(t, newTable(t, Config{}))
	x.must(fromC, FlagSYN, 0, StateSynSent, ReasonOk)
	x.now += 100
	x.must(fromC, FlagSYN, 0, StateSynSent, ReasonOk) // same ISN
	// The retransmission did not refresh the 120 s timer.
	x.now = 1000 + 119
	if _, ok := x.state(); !ok {
		t.Fatal("expired early")
	}
	x.now = 1000 + 120
	if _, ok := x.state(); ok {
		t.Fatal("retransmitted SYN refreshed the timer")
	}
	// A SYN with a later ISN re-initialises the direction.
	x = newConn(t, newTable(t, Config{}))
	x.must(fromC, FlagSYN, 0, StateSynSent, ReasonOk)
	x.cISN += 1 << 20
	x.cNxt = x.cISN
	x.must(fromC, FlagSYN, 0, StateSynSent, ReasonOk)
	x.must(fromS, FlagSYN|FlagACK, 0, StateSynRecv, ReasonOk)
	x.must(fromC, FlagACK, 0, StateEstablished, ReasonOk)
}

func TestReopenAfterTimeWait(t *testing.T) {
	x := newConn(t, newTable(t, Config{}))
	x.handshake()
	x.must(fromC, FlagFIN|FlagACK, 0, StateFinWait, ReasonOk)
	x.must(fromS, FlagFIN|FlagACK, 0, StateLastAck, ReasonOk)
	x.must(fromC, FlagACK, 0, StateTimeWait, ReasonOk)
	x.cISN, x.sISN = x.cNxt+1<<24, x.sNxt+1<<24
	x.cNxt, x.sNxt = x.cISN, x.sISN
	if v := x.must(fromC, FlagSYN, 0, StateSynSent, ReasonOk); !v.New {
		t.Fatal("reopen not reported as new")
	}
	x.must(fromS, FlagSYN|FlagACK, 0, StateSynRecv, ReasonOk)
	x.must(fromC, FlagACK|FlagPSH, 10, StateEstablished, ReasonOk)
	if st := x.t.Stats(); st.Flows != 1 || st.Inserts != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestResyncIgnoredSYN: a client reuses a port whose old flow is still
// ESTABLISHED here but gone at the server; the SYN is ignored and the
// server's SYN-ACK for it rebuilds the flow (tcp_packet case b).
func TestResyncIgnoredSYN(t *testing.T) {
	x := newConn(t, newTable(t, Config{}))
	x.handshake()
	x.cISN = x.cNxt + 1<<30
	x.cNxt = x.cISN
	x.must(fromC, FlagSYN, 0, StateEstablished, ReasonIgnored)
	x.cNxt = x.cISN + 1
	x.sISN += 1 << 29
	x.sNxt = x.sISN
	x.must(fromS, FlagSYN|FlagACK, 0, StateSynRecv, ReasonOk)
	x.must(fromC, FlagACK|FlagPSH, 100, StateEstablished, ReasonOk)
	x.must(fromS, FlagACK, 0, StateEstablished, ReasonOk)
}

func TestChallengeACKInLastAck(t *testing.T) {
	x := newConn(t, newTable(t, Config{}))
	x.handshake()
	x.must(fromS, FlagFIN|FlagACK, 0, StateFinWait, ReasonOk)
	x.must(fromC, FlagACK, 0, StateCloseWait, ReasonOk)
	x.must(fromC, FlagFIN|FlagACK, 0, StateLastAck, ReasonOk)
	// The server's TIME_WAIT gets a SYN; it answers with a challenge ACK.
	x.cISN = x.cNxt + 1<<20
	x.must(fromC, FlagSYN, 0, StateLastAck, ReasonIgnored)
	x.must(fromS, FlagACK, 0, StateLastAck, ReasonIgnored)
	// The real last ACK still closes.
	x.must(fromS, FlagACK, 0, StateTimeWait, ReasonOk)
}

func TestWindow(t *testing.T) {
	x := newConn(t, newTable(t, Config{}))
	x.handshake()
	x.must(fromC, FlagACK|FlagPSH, 1000, StateEstablished, ReasonOk)
	x.must(fromS, FlagACK, 0, StateEstablished, ReasonOk)

	tests := []struct {
		name     string
		seqDelta int64 // relative to the client's next seq
		ackDelta int64 // relative to the server's next seq
		length   uint32
		want     Reason
	}{
		{"in order", 0, 0, 1000, ReasonOk},
		{"in window, ahead", 30000, 0, 1000, ReasonOk},
		{"beyond window", 200000, 0, 1000, ReasonOutOfSequence},
		{"just past the window by less than a window", 66000, 0, 1000, ReasonIgnored},
		{"ack of unsent data", 0, 1, 0, ReasonOutOfSequence},
		{"ack far ahead", 0, 1 << 30, 0, ReasonOutOfSequence},
		{"old retransmission", -200000, 0, 100, ReasonIgnored},
		{"overly delayed ack", 0, -200000, 0, ReasonIgnored},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			y := *x
			y.t = newTable(t, Config{})
			y.cNxt, y.sNxt = y.cISN, y.sISN
			y.handshake()
			y.must(fromC, FlagACK|FlagPSH, 1000, StateEstablished, ReasonOk)
			y.must(fromS, FlagACK, 0, StateEstablished, ReasonOk)
			s := y.seg(fromC, FlagACK|FlagPSH, tc.length)
			s.Seq = uint32(int64(s.Seq) + tc.seqDelta)
			s.Ack = uint32(int64(s.Ack) + tc.ackDelta)
			v := y.t.Track(s, y.now)
			if v.Reason != tc.want {
				t.Fatalf("got %+v, want %v", v, tc.want)
			}
		})
	}
}

// TestWindowScaling: the server advertises window 1000. With scale 7 on
// both SYNs that is 128000 bytes and a segment 100000 bytes ahead fits; if
// only one SYN carried the option, scaling is off and the same segment is
// far beyond the window.
func TestWindowScaling(t *testing.T) {
	tests := []struct {
		name             string
		clientWS, servWS int8
		want             Reason
		beyond           Reason
	}{
		{"both scale", 7, 7, ReasonOk, ReasonOutOfSequence},
		{"client only", 7, -1, ReasonOutOfSequence, ReasonOutOfSequence},
		{"server only", -1, 7, ReasonOutOfSequence, ReasonOutOfSequence},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := newConn(t, newTable(t, Config{}))
			x.win = 1000
			x.wscale = tc.clientWS
			x.must(fromC, FlagSYN, 0, StateSynSent, ReasonOk)
			x.wscale = tc.servWS
			x.must(fromS, FlagSYN|FlagACK, 0, StateSynRecv, ReasonOk)
			x.wscale = -1
			x.must(fromC, FlagACK, 0, StateEstablished, ReasonOk)
			x.must(fromS, FlagACK, 0, StateEstablished, ReasonOk) // scaled window update
			s := x.seg(fromC, FlagACK, 1000)
			s.Seq += 100000
			if v := x.t.Track(s, x.now); v.Reason != tc.want {
				t.Fatalf("100000 ahead: %+v, want %v", v, tc.want)
			}
			s.Seq += 300000 // beyond the scaled window by more than a window
			if v := x.t.Track(s, x.now); v.Reason != tc.beyond {
				t.Fatalf("400000 ahead: %+v, want %v", v, tc.beyond)
			}
		})
	}
}

func TestSequenceWrap(t *testing.T) {
	x := newConn(t, newTable(t, Config{}))
	x.cISN, x.cNxt = 0xffffff00, 0xffffff00
	x.sISN, x.sNxt = 0xfffffff0, 0xfffffff0
	x.handshake()
	for i := 0; i < 10; i++ {
		x.must(fromC, FlagACK|FlagPSH, 200, StateEstablished, ReasonOk)
		x.must(fromS, FlagACK|FlagPSH, 50, StateEstablished, ReasonOk)
		x.must(fromC, FlagACK, 0, StateEstablished, ReasonOk)
	}
	if x.cNxt > 0x10000 || x.sNxt > 0x10000 {
		t.Fatalf("did not wrap: %#x %#x", x.cNxt, x.sNxt)
	}
	s := x.seg(fromC, FlagACK, 100)
	s.Seq += 1 << 30
	if v := x.t.Track(s, x.now); v.Reason != ReasonOutOfSequence {
		t.Fatalf("far ahead after wrap: %+v", v)
	}
	s = x.seg(fromS, FlagACK, 0)
	s.Ack = x.cNxt + 1 // acks data the client never sent, across the wrap
	if v := x.t.Track(s, x.now); v.Reason != ReasonOutOfSequence {
		t.Fatalf("ack beyond end after wrap: %+v", v)
	}
	s = x.seg(fromC, FlagACK|FlagPSH, 100)
	s.Seq -= 100000 // before the wrap: an old retransmission
	if v := x.t.Track(s, x.now); v.Reason != ReasonIgnored {
		t.Fatalf("old data across wrap: %+v", v)
	}
}

func TestRST(t *testing.T) {
	tests := []struct {
		name      string
		seqDelta  int64
		wantState State
		want      Reason
	}{
		{"exact", 0, StateClose, ReasonOk},
		{"in window, inexact", 1000, StateEstablished, ReasonIgnored},
		{"below RCV.NXT", -1, StateEstablished, ReasonOutOfSequence},
		{"beyond window", 1 << 24, StateEstablished, ReasonOutOfSequence},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := newConn(t, newTable(t, Config{}))
			x.handshake()
			x.must(fromC, FlagACK|FlagPSH, 500, StateEstablished, ReasonOk)
			x.must(fromS, FlagACK, 0, StateEstablished, ReasonOk)
			x.must(fromC, FlagACK, 0, StateEstablished, ReasonOk) // assured
			s := x.seg(fromC, FlagRST, 0)
			s.Seq = uint32(int64(s.Seq) + tc.seqDelta)
			v := x.t.Track(s, x.now)
			if v.State != tc.wantState || v.Reason != tc.want {
				t.Fatalf("got %+v, want %v/%v", v, tc.wantState, tc.want)
			}
			if st := st0(x); st != tc.wantState {
				t.Fatalf("stored %v", st)
			}
		})
	}
}

func TestRSTAnsweringSYNDeletes(t *testing.T) {
	x := newConn(t, newTable(t, Config{}))
	x.must(fromC, FlagSYN, 0, StateSynSent, ReasonOk)
	x.sNxt = 0
	x.must(fromS, FlagRST|FlagACK, 0, StateClose, ReasonOk)
	if _, ok := x.state(); ok {
		t.Fatal("flow kept after RST to SYN")
	}
	x.must(fromC, FlagACK, 0, StateNone, ReasonNotFound)
	if st := x.t.Stats(); st.Reset != 1 || st.Flows != 0 || st.States[StateClose] != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWrongDirection(t *testing.T) {
	x := newConn(t, newTable(t, Config{}))
	x.handshake()
	s := x.seg(fromS, FlagACK|FlagPSH, 10)
	s.Dir = Inbound // the server's address arriving from the Internet
	if v := x.t.Track(s, x.now); v.Action != Drop || v.Reason != ReasonWrongDirection {
		t.Fatalf("spoofed server segment: %+v", v)
	}
	x.must(fromS, FlagACK|FlagPSH, 10, StateEstablished, ReasonOk)
}

func TestSynProxyInsert(t *testing.T) {
	tb := newTable(t, Config{})
	const cookie, serverISN, clientISN = 0x71000000, 0x70000000, 0x22222222
	sISN := uint32(serverISN)
	delta := sISN - cookie
	ackSeg := &Segment{Src: client.addr, Dst: server.addr, SrcPort: client.port, DstPort: server.port,
		Flags: FlagACK, Seq: clientISN + 1, Ack: cookie + 1, Window: 502, WScale: -1, Dir: Inbound}
	v := tb.Insert(ackSeg, Open{State: StateEstablished, ClientISN: clientISN, ClientWScale: 7,
		ClientWindow: 502, SACKPerm: true, ServerISN: serverISN, ServerWScale: 7, ServerWindow: 1000,
		SeqAdjust: delta}, 1000)
	if !v.New || v.State != StateEstablished || v.SeqAdjust != delta {
		t.Fatalf("insert: %+v", v)
	}
	if v := tb.Insert(ackSeg, Open{State: StateEstablished}, 1000); v.New {
		t.Fatalf("second insert: %+v", v)
	}
	// Client data acks in cookie space.
	d := *ackSeg
	d.Flags, d.PayloadLen = FlagACK|FlagPSH, 100
	if v := tb.Track(&d, 1001); v.Reason != ReasonOk || v.SeqAdjust != delta {
		t.Fatalf("client data: %+v", v)
	}
	// Server answers in its own space.
	r := &Segment{Src: server.addr, Dst: client.addr, SrcPort: server.port, DstPort: client.port,
		Flags: FlagACK | FlagPSH, Seq: serverISN + 1, Ack: clientISN + 101, Window: 1000, WScale: -1,
		PayloadLen: 500, Dir: Outbound}
	if v := tb.Track(r, 1001); v.Reason != ReasonOk || !v.Reply {
		t.Fatalf("server data: %+v", v)
	}
	// The client acks the server's data in cookie space.
	d.Seq, d.Ack, d.PayloadLen = clientISN+101, cookie+501, 0
	if v := tb.Track(&d, 1002); v.Reason != ReasonOk {
		t.Fatalf("client ack: %+v", v)
	}
	// Untranslated, the same ACK acks data never sent.
	if !tb.SetSeqAdjust(&d, 0) {
		t.Fatal("SetSeqAdjust: flow not found")
	}
	if v := tb.Track(&d, 1002); v.Reason != ReasonOutOfSequence {
		t.Fatalf("untranslated ack: %+v", v)
	}
}

// TestSynProxyHalfOpen: the proxy registers the flow when the cookie is
// valid and lets the server's SYN-ACK complete it through Track.
func TestSynProxyHalfOpen(t *testing.T) {
	x := newConn(t, newTable(t, Config{}))
	const cookie = 0x00100000
	ack := x.seg(fromC, FlagACK, 0)
	ack.Seq, ack.Ack = x.cISN+1, cookie+1
	v := x.t.Insert(ack, Open{State: StateSynSent, ClientISN: x.cISN, ClientWScale: -1, ClientWindow: 65535}, x.now)
	if !v.New || v.State != StateSynSent {
		t.Fatalf("insert: %+v", v)
	}
	x.cNxt = x.cISN + 1
	x.must(fromS, FlagSYN|FlagACK, 0, StateSynRecv, ReasonOk)
	if !x.t.SetSeqAdjust(ack, x.sISN-cookie) {
		t.Fatal("SetSeqAdjust")
	}
	// The client's data, acking in cookie space, completes the handshake.
	s := x.seg(fromC, FlagACK|FlagPSH, 100)
	s.Ack = cookie + 1
	if v := x.t.Track(s, x.now); v.Reason != ReasonOk || v.State != StateEstablished {
		t.Fatalf("client data in cookie space: %+v", v)
	}
	// Untranslated server-space acks are now wrong.
	s.Seq, s.Ack, s.PayloadLen = s.Seq+100, x.sISN+1, 0
	if v := x.t.Track(s, x.now); v.Reason != ReasonOutOfSequence {
		t.Fatalf("client ack in server space: %+v", v)
	}
}

func TestKeyNormalisation(t *testing.T) {
	a4, b4 := netip.MustParseAddr("198.19.10.1"), netip.MustParseAddr("198.19.10.2")
	a6, b6 := netip.MustParseAddr("2001:2:db8::1"), netip.MustParseAddr("2001:2:db8::2")
	tests := []struct {
		src, dst netip.Addr
		sp, dp   uint16
	}{
		{a4, b4, 1000, 80},
		{b4, a4, 80, 1000},
		{a6, b6, 5, 6},
		{a4, a4, 1, 2}, // same address, ports decide
		{a4, a6, 1, 1},
	}
	for _, tc := range tests {
		s1 := &Segment{Src: tc.src, Dst: tc.dst, SrcPort: tc.sp, DstPort: tc.dp}
		s2 := &Segment{Src: tc.dst, Dst: tc.src, SrcPort: tc.dp, DstPort: tc.sp}
		k1, lo1 := makeKey(s1)
		k2, lo2 := makeKey(s2)
		if k1 != k2 || lo1 == lo2 {
			t.Errorf("%v: keys %v/%v lo %v/%v", tc, k1, k2, lo1, lo2)
		}
		var h hasher
		if h.hash(&k1) != h.hash(&k2) {
			t.Errorf("%v: hashes differ", tc)
		}
		e := entry{addr: k1.addr, ports: k1.ports}
		if lo1 {
			e.flags |= efOrigLo
		}
		fi := e.info(0)
		if fi.Src != tc.src || fi.Dst != tc.dst || fi.SrcPort != tc.sp || fi.DstPort != tc.dp {
			t.Errorf("%v: info %+v", tc, fi)
		}
	}
	// Different ports or addresses give different keys.
	k1, _ := makeKey(&Segment{Src: a4, Dst: b4, SrcPort: 1, DstPort: 2})
	k2, _ := makeKey(&Segment{Src: a4, Dst: b4, SrcPort: 2, DstPort: 1})
	if k1 == k2 {
		t.Error("port swap on one side collides")
	}
}

// TestSynProxyClose: a SYN-proxied flow, whose client acks in the cookie's
// sequence space, reaches TIME_WAIT once both FINs are acked, each in its
// own space.
func TestSynProxyClose(t *testing.T) {
	tb := newTable(t, Config{})
	const cookie, serverISN, clientISN = 0x71000000, 0x70000000, 0x22222222
	sISN := uint32(serverISN)
	c := &Segment{Src: client.addr, Dst: server.addr, SrcPort: client.port, DstPort: server.port,
		Window: 502, WScale: -1, Dir: Inbound}
	c.Flags, c.Seq, c.Ack = FlagACK, clientISN+1, cookie+1
	tb.Insert(c, Open{State: StateEstablished, ClientISN: clientISN, ClientWScale: 7, ClientWindow: 502,
		SACKPerm: true, ServerISN: serverISN, ServerWScale: 7, ServerWindow: 1000, SeqAdjust: sISN - cookie}, 1000)
	s := &Segment{Src: server.addr, Dst: client.addr, SrcPort: server.port, DstPort: client.port,
		Window: 1000, WScale: -1, Dir: Outbound}
	step := func(seg *Segment, flags uint8, seq, ack, n uint32, want State) {
		t.Helper()
		seg.Flags, seg.Seq, seg.Ack, seg.PayloadLen = flags, seq, ack, n
		if v := tb.Track(seg, 1001); v.Action != Pass || v.Reason != ReasonOk || v.State != want {
			t.Fatalf("%+v: %+v, want %v", seg, v, want)
		}
	}
	step(s, FlagACK|FlagPSH, serverISN+1, clientISN+1, 10, StateEstablished)
	step(c, FlagFIN|FlagACK, clientISN+1, cookie+11, 0, StateFinWait)
	step(s, FlagFIN|FlagACK, serverISN+11, clientISN+2, 0, StateLastAck)
	step(c, FlagACK, clientISN+2, cookie+11, 0, StateLastAck) // not the FIN yet
	step(c, FlagACK, clientISN+2, cookie+12, 0, StateTimeWait)
}
