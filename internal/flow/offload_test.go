package flow

import (
	"testing"
	"time"
)

// TestOffload: a flow offloaded mid-stream, whose segments the fast path
// then carries unseen, comes back on its FIN: the FIN and what follows
// pass (windows learnt again), the verdict says to unoffload it, and Touch
// keeps it alive meanwhile.
func TestOffload(t *testing.T) {
	x := newConn(t, newTable(t, Config{Timeouts: Timeouts{Established: 100 * time.Second}}))
	x.must(fromC, FlagSYN, 0, StateSynSent, ReasonOk)
	x.must(fromS, FlagSYN|FlagACK, 0, StateSynRecv, ReasonOk)
	seg := x.seg(fromC, FlagACK, 0)
	if x.t.Offload(seg) {
		t.Fatal("offloaded before the handshake completed")
	}
	x.must(fromC, FlagACK, 0, StateEstablished, ReasonOk)
	x.must(fromS, FlagACK|FlagPSH, 1000, StateEstablished, ReasonOk)
	x.must(fromC, FlagACK, 0, StateEstablished, ReasonOk)
	if !x.t.Offload(seg) {
		t.Fatal("an assured, established flow was not offloaded")
	}
	if x.t.Offload(seg) {
		t.Fatal("offloaded twice")
	}
	x.t.Range(x.now, func(f FlowInfo) bool {
		if !f.Offloaded {
			t.Errorf("flow info does not say offloaded: %+v", f)
		}
		return true
	})
	// A plain segment seen meanwhile (in flight when it was offloaded) says
	// so and keeps it offloaded.
	if v := x.must(fromS, FlagACK|FlagPSH, 1000, StateEstablished, ReasonOk); !v.Offloaded || v.Unoffload {
		t.Fatalf("plain segment: %+v", v)
	}
	// The fast path carries 3 GB each way, unseen; only Touch refreshes.
	for i := 0; i < 5; i++ {
		x.now += 60
		if !x.t.Touch(seg, x.now, true) {
			t.Fatalf("touch %d: flow gone", i)
		}
	}
	x.cNxt += 3 << 30
	x.sNxt += 3 << 30
	v := x.must(fromC, FlagFIN|FlagACK, 0, StateFinWait, ReasonOk)
	if v.Offloaded || !v.Unoffload {
		t.Fatalf("FIN: %+v", v)
	}
	if x.t.Touch(seg, x.now, true) {
		t.Fatal("touch of a flow no longer offloaded")
	}
	x.must(fromS, FlagACK|FlagPSH, 500, StateCloseWait, ReasonOk)
	x.must(fromS, FlagFIN|FlagACK, 0, StateLastAck, ReasonOk)
	x.must(fromC, FlagACK, 0, StateTimeWait, ReasonOk)
}

// TestOffloadRules: what may not be offloaded, and Unoffload.
func TestOffloadRules(t *testing.T) {
	tb := newTable(t, Config{})
	x := newConn(t, tb)
	if tb.Offload(x.seg(fromC, FlagACK, 0)) {
		t.Fatal("offloaded a flow that does not exist")
	}
	x.handshake()
	x.must(fromS, FlagACK|FlagPSH, 10, StateEstablished, ReasonOk)
	seg := x.seg(fromC, FlagACK, 0)
	if !tb.Offload(x.seg(fromS, FlagACK, 0)) {
		t.Fatal("offload from the server's side")
	}
	if !tb.Unoffload(seg) || tb.Unoffload(seg) {
		t.Fatal("unoffload")
	}
	// Windows are learnt again: a segment far ahead passes, once.
	x.sNxt += 1 << 30
	x.must(fromS, FlagACK|FlagPSH, 10, StateEstablished, ReasonOk)
	x.must(fromC, FlagACK, 0, StateEstablished, ReasonOk)
}
