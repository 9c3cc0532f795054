package flow

// State is a conntrack TCP state (enum tcp_conntrack).
type State uint8

const (
	StateNone State = iota
	StateSynSent
	StateSynRecv
	StateEstablished
	StateFinWait
	StateCloseWait
	StateLastAck
	StateTimeWait
	StateClose
	StateSynSent2
	NumStates // number of real states; not a state

	// Pseudo states used only inside the transition table.
	sIV = NumStates + 1 // invalid
	sIG = NumStates + 2 // ignore: pass, no state change
)

var stateNames = [NumStates]string{
	"none", "syn_sent", "syn_recv", "established", "fin_wait",
	"close_wait", "last_ack", "time_wait", "close", "syn_sent2",
}

// String returns a stable snake_case name usable as a metric label.
func (s State) String() string {
	if s < NumStates {
		return stateNames[s]
	}
	return "invalid"
}

// Phase maps a conntrack state onto the product model's ProtocolState:
// "new", "open", "closing" or "closed".
func (s State) Phase() string {
	switch s {
	case StateSynSent, StateSynRecv, StateSynSent2:
		return "new"
	case StateEstablished:
		return "open"
	case StateFinWait, StateCloseWait, StateLastAck:
		return "closing"
	case StateTimeWait, StateClose:
		return "closed"
	}
	return "none"
}

// closing reports the states conntrack's tcp_can_early_drop allows to be
// dropped under table pressure.
func (s State) closing() bool {
	switch s {
	case StateFinWait, StateCloseWait, StateLastAck, StateTimeWait, StateClose:
		return true
	}
	return false
}

// Action is what the tracker says should happen to the segment. The caller
// decides whether to act on it (monitor mode, thresholds).
type Action uint8

const (
	Pass Action = iota
	Drop
)

func (a Action) String() string {
	if a == Pass {
		return "pass"
	}
	return "drop"
}

// Reason explains a verdict. String values are stable metric labels.
type Reason uint8

const (
	// ReasonOk: the segment is valid and was applied to the flow.
	ReasonOk Reason = iota
	// ReasonIgnored: passed without changing the flow (conntrack IG cell,
	// a window "ignore" such as a retransmission or a very late ACK, or an
	// in-window RST whose seq is not exact).
	ReasonIgnored
	// ReasonNotFound: no flow and the segment may not open one.
	ReasonNotFound
	// ReasonUnexpected: flags not valid for the flow's state (IV cell).
	ReasonUnexpected
	// ReasonOutOfSequence: sequence or acknowledgment outside the window.
	ReasonOutOfSequence
	// ReasonAlreadyClosed: the flow is in TIME_WAIT or CLOSE.
	ReasonAlreadyClosed
	// ReasonInvalidFlags: malformed flag combination (tcp_error).
	ReasonInvalidFlags
	// ReasonTableFull: a new flow could not be stored.
	ReasonTableFull
	// ReasonWrongDirection: the segment matches a flow but arrived on the
	// interface the other endpoint sits behind (spoofed source).
	ReasonWrongDirection
	numReasons
)

var reasonNames = [numReasons]string{
	"ok", "ignored", "not_found", "unexpected", "out_of_sequence",
	"already_closed", "invalid_flags", "table_full", "wrong_direction",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Verdict is the result of Track.
type Verdict struct {
	Action Action
	Reason Reason
	State  State // state after the segment (StateNone if there is no flow)
	// New is set when the segment created the flow (SYN, pickup, reopen).
	New bool
	// Reply is set when the segment travels in the flow's reply direction.
	Reply bool
	// SeqAdjust is the flow's SYN-proxy sequence offset (server ISN minus
	// cookie ISN); zero for ordinary flows.
	SeqAdjust uint32
	// Offloaded: the flow is offloaded to the kernel fast path (Offload).
	Offloaded bool
	// Unoffload: this segment (a SYN, FIN or RST, which the fast path
	// leaves to the tracker) took the flow back from the fast path; the
	// caller removes it from the fast path's map.
	Unoffload bool
}

// Short names for the transition table.
const (
	sNO = StateNone
	sSS = StateSynSent
	sSR = StateSynRecv
	sES = StateEstablished
	sFW = StateFinWait
	sCW = StateCloseWait
	sLA = StateLastAck
	sTW = StateTimeWait
	sCL = StateClose
	sS2 = StateSynSent2
)

// transitions is tcp_conntracks from nf_conntrack_proto_tcp.c (6.1):
// [direction][flag class][old state] -> new state, sIV or sIG. Direction 0
// is the flow's original direction. The NONE/ack cell says ES: it is only
// reached when mid-stream pickup is allowed (tcp_new checks tcp_loose).
var transitions = [2][numClasses][NumStates]State{
	{ // ORIGINAL
		//           sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
		classSYN:    {sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2},
		classSYNACK: {sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR},
		classFIN:    {sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV},
		classACK:    {sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV},
		classRST:    {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
		classNone:   {sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV},
	},
	{ // REPLY
		//           sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
		classSYN:    {sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2},
		classSYNACK: {sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR},
		classFIN:    {sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV},
		classACK:    {sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG},
		classRST:    {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
		classNone:   {sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV},
	},
}
