package flow

import (
	"testing"
)

// setups bring a fresh connection into each state.
var setups = map[State][]struct {
	fromClient bool
	flags      uint8
}{
	StateSynSent:     {{fromC, FlagSYN}},
	StateSynRecv:     {{fromC, FlagSYN}, {fromS, FlagSYN | FlagACK}},
	StateEstablished: {{fromC, FlagSYN}, {fromS, FlagSYN | FlagACK}, {fromC, FlagACK}},
	StateFinWait:     {{fromC, FlagSYN}, {fromS, FlagSYN | FlagACK}, {fromC, FlagACK}, {fromC, FlagFIN | FlagACK}},
	StateCloseWait: {{fromC, FlagSYN}, {fromS, FlagSYN | FlagACK}, {fromC, FlagACK}, {fromC, FlagFIN | FlagACK},
		{fromS, FlagACK}},
	StateLastAck: {{fromC, FlagSYN}, {fromS, FlagSYN | FlagACK}, {fromC, FlagACK}, {fromC, FlagFIN | FlagACK},
		{fromS, FlagACK}, {fromS, FlagFIN | FlagACK}},
	StateTimeWait: {{fromC, FlagSYN}, {fromS, FlagSYN | FlagACK}, {fromC, FlagACK}, {fromC, FlagFIN | FlagACK},
		{fromS, FlagACK}, {fromS, FlagFIN | FlagACK}, {fromC, FlagACK}},
	StateClose:    {{fromC, FlagSYN}, {fromS, FlagSYN | FlagACK}, {fromC, FlagACK}, {fromC, FlagRST | FlagACK}},
	StateSynSent2: {{fromC, FlagSYN}, {fromS, FlagSYN}},
}

var classFlags = [numClasses]uint8{
	classSYN:    FlagSYN,
	classSYNACK: FlagSYN | FlagACK,
	classFIN:    FlagFIN | FlagACK,
	classACK:    FlagACK,
	classRST:    FlagRST | FlagACK,
	classNone:   FlagURG, // no SYN/RST/FIN/ACK: always malformed
}

type cell struct {
	state  State
	reason Reason
	gone   bool // the flow no longer exists afterwards
	isNew  bool
}

var (
	ok     = func(s State) cell { return cell{state: s} }
	ig     = func(s State) cell { return cell{state: s, reason: ReasonIgnored} }
	iv     = func(s State) cell { return cell{state: s, reason: ReasonUnexpected} }
	closed = func(s State) cell { return cell{state: s, reason: ReasonAlreadyClosed} }
	reopen = cell{state: StateSynSent, isNew: true}
	killed = cell{state: StateClose, gone: true}
)

// TestTransitions walks every cell of conntrack's 6.1 table (the notes'
// §4.2) for both directions. Each row is one (direction, flag class); its
// ten cells are the old states in tcp_conntracks order, and each holds the
// expected resulting state and reason. Departures from conntrack, all
// deliberate: CLOSE admits only SYN (ALREADY_CLOSED), a SYN reopens CLOSE
// even without a FIN, a RST with no reply seen deletes the flow (as
// conntrack's nf_ct_kill_acct), and the close is exact: a FIN from the side
// that already closed is a retransmission (FIN_WAIT and CLOSE_WAIT stay),
// and LAST_ACK turns to TIME_WAIT only once both FINs are acked (the
// setups' client closes first, so the server's ACK in LAST_ACK, which
// acks only the client's FIN, leaves it there).
func TestTransitions(t *testing.T) {
	rows := []struct {
		reply bool
		class uint8
		cells [NumStates]cell
	}{
		{false, classSYN, [NumStates]cell{
			{}, ok(sSS), ig(sSR), ig(sES), ig(sFW), ig(sCW), ig(sLA), reopen, reopen, ok(sS2)}},
		{false, classSYNACK, [NumStates]cell{
			{}, iv(sSS), ok(sSR), iv(sES), iv(sFW), iv(sCW), iv(sLA), closed(sTW), closed(sCL), ok(sSR)}},
		{false, classFIN, [NumStates]cell{
			{}, iv(sSS), ok(sFW), ok(sFW), ok(sFW), ok(sCW), ok(sLA), ok(sTW), closed(sCL), iv(sS2)}},
		{false, classACK, [NumStates]cell{
			{}, iv(sSS), ok(sES), ok(sES), ok(sCW), ok(sCW), ok(sTW), ok(sTW), closed(sCL), iv(sS2)}},
		{false, classRST, [NumStates]cell{
			{}, killed, ok(sCL), ok(sCL), ok(sCL), ok(sCL), ok(sCL), ok(sCL), closed(sCL), ok(sCL)}},
		{true, classSYN, [NumStates]cell{
			{}, ok(sS2), iv(sSR), iv(sES), iv(sFW), iv(sCW), iv(sLA), reopen, closed(sCL), ok(sS2)}},
		{true, classSYNACK, [NumStates]cell{
			{}, ok(sSR), ig(sSR), ig(sES), ig(sFW), ig(sCW), ig(sLA), ig(sTW), ig(sCL), ok(sSR)}},
		{true, classFIN, [NumStates]cell{
			{}, iv(sSS), ok(sFW), ok(sFW), ok(sLA), ok(sLA), ok(sLA), ok(sTW), closed(sCL), iv(sS2)}},
		{true, classACK, [NumStates]cell{
			{}, ig(sSS), ok(sSR), ok(sES), ok(sCW), ok(sCW), ok(sLA), ok(sTW), closed(sCL), ig(sS2)}},
		{true, classRST, [NumStates]cell{
			{}, killed, ok(sCL), ok(sCL), ok(sCL), ok(sCL), ok(sCL), ok(sCL), closed(sCL), ok(sCL)}},
	}
	for _, r := range rows {
		dirName := "original"
		if r.reply {
			dirName = "reply"
		}
		for old := StateSynSent; old < NumStates; old++ {
			want := r.cells[old]
			t.Run(dirName+"/"+classNames[r.class]+"/"+old.String(), func(t *testing.T) {
				tb := newTable(t, Config{})
				x := newConn(t, tb)
				for _, st := range setups[old] {
					if v := x.send(st.fromClient, st.flags, 0); v.Action != Pass {
						t.Fatalf("setup %+v: %+v", st, v)
					}
				}
				if s, _ := x.state(); s != old {
					t.Fatalf("setup reached %v, want %v", s, old)
				}
				if r.class == classSYN && old >= StateEstablished && old != StateSynSent2 {
					// A new incarnation uses a later ISN.
					x.cISN, x.sISN = x.cNxt+100000, x.sNxt+100000
				}
				flags := classFlags[r.class]
				if r.class == classRST && old == StateSynSent && !r.reply {
					flags = FlagRST // the client has nothing to acknowledge yet
				}
				v := x.t.Track(x.seg(!r.reply, flags, 0), x.now)
				if v.State != want.state || v.Reason != want.reason || v.New != want.isNew {
					t.Fatalf("got %v/%v new=%v (%+v), want %v/%v new=%v",
						v.State, v.Reason, v.New, v, want.state, want.reason, want.isNew)
				}
				wantAction := Pass
				if want.reason != ReasonOk && want.reason != ReasonIgnored {
					wantAction = Drop
				}
				if v.Action != wantAction {
					t.Fatalf("action %v, want %v", v.Action, wantAction)
				}
				if v.Reply != (r.reply && !want.isNew) {
					t.Fatalf("reply flag %v", v.Reply)
				}
				s, found := x.state()
				if found == want.gone {
					t.Fatalf("flow present=%v, want %v", found, !want.gone)
				}
				if found && s != want.state {
					t.Fatalf("stored state %v, want %v", s, want.state)
				}
			})
		}
	}
}

// TestNoFlow covers the NONE column: only a SYN opens a flow (ACK needs
// pickup, tested separately), and malformed flags are refused first.
func TestNoFlow(t *testing.T) {
	for class := uint8(0); class < numClasses; class++ {
		t.Run(classNames[class], func(t *testing.T) {
			x := newConn(t, newTable(t, Config{}))
			v := x.t.Track(x.seg(fromC, classFlags[class], 0), x.now)
			want := Verdict{Action: Drop, Reason: ReasonNotFound}
			switch class {
			case classSYN:
				want = Verdict{Action: Pass, State: StateSynSent, New: true}
			case classNone:
				want.Reason = ReasonInvalidFlags
			}
			if v != want {
				t.Fatalf("got %+v, want %+v", v, want)
			}
		})
	}
}

func TestInvalidFlags(t *testing.T) {
	tests := []struct {
		flags uint8
		valid bool
	}{
		{FlagSYN, true},
		{FlagSYN | FlagURG, true},
		{FlagSYN | FlagACK, true},
		{FlagSYN | FlagACK | FlagECE | FlagCWR, true},
		{FlagRST, true},
		{FlagRST | FlagACK, true},
		{FlagFIN | FlagACK, true},
		{FlagFIN | FlagACK | FlagURG | FlagPSH, true},
		{FlagACK, true},
		{FlagACK | FlagPSH, true},
		{FlagACK | FlagURG, true},
		{0, false},                           // null scan
		{FlagFIN, false},                     // bare FIN
		{FlagSYN | FlagFIN, false},           // SYN|FIN
		{FlagSYN | FlagRST, false},           // SYN|RST
		{FlagFIN | FlagPSH | FlagURG, false}, // Xmas
		{0xff, false},                        // everything
		{FlagSYN | FlagACK | FlagURG, false}, // not in tcp_valid_flags
		{FlagRST | FlagFIN | FlagACK, false}, // RST|FIN
		{FlagPSH, false},                     // PSH only
		{FlagURG, false},                     // URG only
		{FlagSYN | FlagACK | FlagFIN, false}, // SYN|ACK|FIN
		{FlagRST | FlagACK | FlagURG, false}, // RST|ACK|URG
		{FlagFIN | FlagURG, false},           // FIN|URG without ACK
		{FlagECE | FlagCWR | FlagPSH, false}, // no real flag
		{FlagSYN | FlagECE | FlagCWR, true},  // ECN setup SYN
		{FlagACK | FlagECE | FlagPSH, true},  // ECN echo
		{FlagRST | FlagACK | FlagPSH, true},  // PSH ignored
		{FlagFIN | FlagACK | FlagCWR, true},  // CWR ignored
		{FlagSYN | FlagURG | FlagPSH, true},  // SYN|URG
		{FlagSYN | FlagACK | FlagRST, false}, // SYN|ACK|RST
		{FlagFIN | FlagSYN | FlagRST | FlagACK, false},
	}
	for _, tc := range tests {
		if got := ValidFlags(tc.flags); got != tc.valid {
			t.Errorf("ValidFlags(%#x) = %v, want %v", tc.flags, got, tc.valid)
		}
		x := newConn(t, newTable(t, Config{Loose: true}))
		v := x.t.Track(x.seg(fromC, tc.flags, 0), x.now)
		if (v.Reason == ReasonInvalidFlags) == tc.valid {
			t.Errorf("Track(%#x) = %+v", tc.flags, v)
		}
	}
}
