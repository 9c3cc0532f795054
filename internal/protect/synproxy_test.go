package protect

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/flow"
	"github.com/xskgate/xskgate/internal/packet"
)

func TestCookieRoundTrip(t *testing.T) {
	k := sipKey{1, 2}
	tp := tuple{cli4, srv4, 40000, 443}
	o := cookieOpts{mssIdx: 3, wscale: 7, sack: true}
	now := int64(1000 * time.Second)
	c := k.makeCookie(&tp, 5, o, now)
	tests := []struct {
		name  string
		tp    tuple
		isn   uint32
		c     uint32
		after time.Duration
		ok    bool
	}{
		{"valid", tp, 5, c, 0, true},
		{"valid later", tp, 5, c, 30 * time.Second, true},
		{"expired", tp, 5, c, 50 * time.Second, false},
		{"wrapped counter", tp, 5, c, 64 * time.Second, false},
		{"other isn", tp, 6, c, 0, false},
		{"other port", tuple{cli4, srv4, 40001, 443}, 5, c, 0, false},
		{"flipped bit", tp, 5, c ^ 1<<20, 0, false},
		{"flipped option", tp, 5, c ^ 1, 0, false},
	}
	for _, tc := range tests {
		got, ok := k.checkCookie(&tc.tp, tc.isn, tc.c, now+int64(tc.after))
		if ok != tc.ok || (ok && got != o) {
			t.Errorf("%s: ok=%v opts=%+v", tc.name, ok, got)
		}
	}
}

// proxyRig runs a full SYN-proxied handshake and returns the connection
// state: the cookie ISN and the server ISN.
func proxyHandshake(t testing.TB, i *Inspector, cli, srv netip.Addr) (x *conn, cookie uint32) {
	t.Helper()
	x = &conn{t: t, i: i, c: cli, s: srv, cp: 41000, sp: 80, cSeq: 0x1000, sSeq: 0}
	spare := extraOf(i)
	syn := tseg{src: cli, dst: srv, sport: x.cp, dport: x.sp, seq: x.cSeq, flags: packet.SYN, win: 64240, mss: 1460, ws: 7, sack: true}
	pk := run(i, engine.Outer, syn.frame())
	if pk.Verdict != engine.Bounce {
		t.Fatalf("SYN: %v, want bounce", pk.Verdict)
	}
	p := parsed(t, pk)
	if p.Src != srv || p.Dst != cli || p.SrcPort != x.sp || p.DstPort != x.cp ||
		p.TCP.Flags != packet.SYN|packet.ACK || p.TCP.Ack != x.cSeq+1 ||
		p.TCP.Opts.Has&(packet.HasMSS|packet.HasWScale|packet.HasSACKPerm) != packet.HasMSS|packet.HasWScale|packet.HasSACKPerm ||
		p.TCP.Opts.Has&packet.HasTimestamps != 0 || p.TCP.Window != 0 {
		t.Fatalf("SYN-ACK (window 0 wanted): %+v", p)
	}
	if [6]byte(pk.Data[0:6]) != macC {
		t.Fatal("SYN-ACK not addressed to the client's MAC")
	}
	cookie = p.TCP.Seq
	x.cSeq++
	// The client's ACK becomes the SYN to the server.
	ack := tseg{src: cli, dst: srv, sport: x.cp, dport: x.sp, seq: x.cSeq, ack: cookie + 1, flags: packet.ACK, win: 502, ws: -1}
	pk = run(i, engine.Outer, ack.frame())
	if pk.Verdict != engine.Forward {
		t.Fatalf("cookie ACK: %v", pk.Verdict)
	}
	p = parsed(t, pk)
	if p.TCP.Flags != packet.SYN || p.TCP.Seq != x.cSeq-1 || p.TCP.Opts.MSS != 1460 || p.TCP.Opts.WScale != 7 ||
		!p.TCP.Opts.SACKPerm || p.Src != cli || p.Dst != srv {
		t.Fatalf("SYN to server: %+v", p.TCP)
	}
	// Client segments before the server answered, the window-0 SYN-ACK's
	// zero-window probe (seq = ISN) and data (seq = ISN+1): the SYN may
	// have been lost, so each goes to the server as the SYN again, its
	// payload dropped.
	probe := tseg{src: cli, dst: srv, sport: x.cp, dport: x.sp, seq: x.cSeq - 1, ack: cookie + 1, flags: packet.ACK, win: 502, ws: -1}
	early := tseg{src: cli, dst: srv, sport: x.cp, dport: x.sp, seq: x.cSeq, ack: cookie + 1, flags: packet.ACK | packet.PSH, win: 502, ws: -1, payload: []byte("early")}
	for _, seg := range []tseg{probe, early} {
		pk := run(i, engine.Outer, seg.frame())
		p := parsed(t, pk)
		if pk.Verdict != engine.Forward || p.TCP.Flags != packet.SYN || p.TCP.Seq != x.cSeq-1 || p.TCP.Ack != 0 ||
			p.TCP.Opts.MSS != 1460 || p.TCP.Opts.WScale != 7 || !p.TCP.Opts.SACKPerm || p.PayloadLen != 0 || p.Src != cli || p.Dst != srv {
			t.Fatalf("segment seq %#x before the server answered: %v %+v, want the SYN again", seg.seq, pk.Verdict, p.TCP)
		}
	}
	// One that does not ack the cookie is not the client's: dropped.
	bad := early
	bad.ack++
	if v := run(i, engine.Outer, bad.frame()).Verdict; v != engine.Drop {
		t.Fatalf("segment acking no cookie: %v", v)
	}
	// The server's SYN-ACK becomes the ACK completing its handshake.
	x.sSeq = 0x80000000
	sa := tseg{src: srv, dst: cli, sport: x.sp, dport: x.cp, seq: x.sSeq, ack: x.cSeq, flags: packet.SYN | packet.ACK, win: 65160, mss: 1460, ws: 7, sack: true, fromServer: true}
	for range 2 { // the second is a retransmission: answered the same way
		pk = run(i, engine.Inner, sa.frame())
		if pk.Verdict != engine.Bounce {
			t.Fatalf("server SYN-ACK: %v", pk.Verdict)
		}
		p = parsed(t, pk)
		if p.TCP.Flags != packet.ACK || p.TCP.Seq != x.cSeq || p.TCP.Ack != x.sSeq+1 || p.Src != cli || p.Dst != srv {
			t.Fatalf("ACK to server: %+v", p.TCP)
		}
		if [6]byte(pk.Data[0:6]) != macS {
			t.Fatal("ACK not addressed to the server's MAC")
		}
		// The window update opens the client's window: from the server
		// in the client's sequence space, as the SYN-ACK would have left.
		up := spare.take()
		if len(up) != 1 || up[0].to != engine.Outer {
			t.Fatalf("window update: %d frames sent (%+v)", len(up), up)
		}
		u := parsed(t, engine.Packet{Data: up[0].frame, Len: uint32(len(up[0].frame))})
		if u.Src != srv || u.Dst != cli || u.SrcPort != x.sp || u.DstPort != x.cp || u.TCP.Flags != packet.ACK ||
			u.TCP.Seq != cookie+1 || u.TCP.Ack != x.cSeq || u.TCP.Window != 65160>>7 || u.PayloadLen != 0 {
			t.Fatalf("window update: %+v %+v", u, u.TCP)
		}
		if [6]byte(up[0].frame[0:6]) != macC || [6]byte(up[0].frame[6:12]) != macS {
			t.Fatal("window update not addressed from the server's MAC to the client's")
		}
	}
	x.sSeq++
	return x, cookie
}

func TestSynProxy(t *testing.T) {
	for _, fam := range []struct {
		name     string
		cli, srv netip.Addr
	}{{"ipv4", cli4, srv4}, {"ipv6", cli6, srv6}} {
		t.Run(fam.name, func(t *testing.T) {
			i, _ := newTestInspector(t, baseConfig(ModeMitigate))
			x, cookie := proxyHandshake(t, i, fam.cli, fam.srv)
			delta := x.sSeq - (cookie + 1)
			// Client data, acking in cookie space with a SACK block: the
			// server must see its own sequence space.
			d := tseg{src: x.c, dst: x.s, sport: x.cp, dport: x.sp, seq: x.cSeq, ack: cookie + 1, flags: packet.ACK | packet.PSH,
				win: 502, ws: -1, payload: []byte("GET /"), sackBlocks: [][2]uint32{{cookie + 100, cookie + 200}}}
			pk := run(i, engine.Outer, d.frame())
			if pk.Verdict != engine.Forward {
				t.Fatalf("client data: %v", pk.Verdict)
			}
			p := parsed(t, pk)
			if p.TCP.Ack != x.sSeq || p.TCP.Seq != x.cSeq {
				t.Fatalf("client data translated to seq %#x ack %#x, want ack %#x", p.TCP.Seq, p.TCP.Ack, x.sSeq)
			}
			x.cSeq += 5
			// Server data: seq back into the cookie space.
			s := tseg{src: x.s, dst: x.c, sport: x.sp, dport: x.cp, seq: x.sSeq, ack: x.cSeq, flags: packet.ACK | packet.PSH, win: 500, ws: -1, payload: []byte("200 OK"), fromServer: true}
			pk = run(i, engine.Inner, s.frame())
			p = parsed(t, pk)
			if pk.Verdict != engine.Forward || p.TCP.Seq != x.sSeq-delta || p.TCP.Ack != x.cSeq {
				t.Fatalf("server data: %v seq %#x want %#x", pk.Verdict, p.TCP.Seq, x.sSeq-delta)
			}
			fl := i.Flows(FlowFilter{States: []flow.State{flow.StateEstablished}})
			if len(fl) != 1 || fl[0].SeqAdjust != delta {
				t.Fatalf("flows %+v", fl)
			}
			st := i.Stats()
			if st.Cookies["sent"] != 1 || st.Cookies["valid"] != 1 || st.Count("proxy_established", "", "") != 2 ||
				st.Proxy["window_update"] != 2 || st.Proxy["window_update_no_frame"] != 0 ||
				st.Count("challenge_passed", "", "") != 1 || st.Count("proxy_pending", "drop", "drop") != 1 ||
				st.Count("proxy_syn_resent", "pass", "pass") != 2 || st.Proxy["syn_resent"] != 2 {
				t.Fatalf("stats %+v %+v", st.Cookies, st.Decisions)
			}
		})
	}
}

func TestSynProxyBadCookie(t *testing.T) {
	i, clk := newTestInspector(t, baseConfig(ModeMitigate))
	syn := synFrom(cli4, 1234, 77)
	pk := run(i, engine.Outer, syn.frame())
	cookie := parsed(t, pk).TCP.Seq
	ack := tseg{src: cli4, dst: srv4, sport: 1234, dport: 80, seq: 78, ack: cookie + 2, flags: packet.ACK, win: 100, ws: -1}
	if v := run(i, engine.Outer, ack.frame()).Verdict; v != engine.Drop {
		t.Fatalf("bad cookie: %v", v)
	}
	ack.ack = cookie + 1
	clk.advance(60 * time.Second)
	if v := run(i, engine.Outer, ack.frame()).Verdict; v != engine.Drop {
		t.Fatalf("expired cookie: %v", v)
	}
	st := i.Stats()
	if st.Cookies["invalid"] != 1 || st.Cookies["valid"] != 0 || len(i.Flows(FlowFilter{})) != 0 {
		t.Fatalf("%+v", st.Cookies)
	}
}

func TestChallengeBudget(t *testing.T) {
	c := baseConfig(ModeMitigate)
	c.SynProxy.ChallengeRate, c.SynProxy.ChallengeBurst = 1, 2
	i, _ := newTestInspector(t, c)
	var got []engine.Verdict
	for n := range 5 {
		got = append(got, run(i, engine.Outer, synFrom(cli4, uint16(n+1), 1).frame()).Verdict)
	}
	if got[0] != engine.Bounce || got[2] != engine.Bounce || got[3] != engine.Drop {
		t.Fatalf("%v", got)
	}
	if st := i.Stats(); st.Cookies["rate_limited"] != 2 {
		t.Fatalf("%+v", st.Cookies)
	}
}

// TestWindowUpdateNoFrame: without a spare frame the server's handshake
// still completes; the missing update is counted (the client's zero-window
// probe opens the window later).
func TestWindowUpdateNoFrame(t *testing.T) {
	i, _ := newTestInspector(t, baseConfig(ModeMitigate))
	cookie := parsed(t, run(i, engine.Outer, synFrom(cli4, 1234, 77).frame())).TCP.Seq
	ack := tseg{src: cli4, dst: srv4, sport: 1234, dport: 80, seq: 78, ack: cookie + 1, flags: packet.ACK, win: 100, ws: -1}
	if v := run(i, engine.Outer, ack.frame()).Verdict; v != engine.Forward {
		t.Fatalf("cookie ACK: %v", v)
	}
	x := extraOf(i)
	x.refuse = true
	sa := tseg{src: srv4, dst: cli4, sport: 80, dport: 1234, seq: 5000, ack: 78, flags: packet.SYN | packet.ACK, win: 65160,
		mss: 1460, ws: 7, sack: true, fromServer: true}
	if v := run(i, engine.Inner, sa.frame()).Verdict; v != engine.Bounce {
		t.Fatalf("server SYN-ACK: %v", v)
	}
	if st := i.Stats(); st.Proxy["window_update_no_frame"] != 1 || st.Proxy["window_update"] != 0 || len(x.sent) != 0 {
		t.Fatalf("%+v, sent %d", st.Proxy, len(x.sent))
	}
}
