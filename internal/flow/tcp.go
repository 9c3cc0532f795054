package flow

// outcome tells trackLocked what to do with the entry after packet.
type outcome uint8

const (
	outKeep   outcome = iota
	outKill           // delete the entry (RST with no reply seen)
	outReopen         // delete the entry and create a new one from this SYN
)

// window check results (enum nf_ct_tcp_action).
type winResult uint8

const (
	winAccept winResult = iota
	winIgnore           // pass, learn nothing
	winInvalid
)

// maxAckWinConst is MAXACKWINCONST: the smallest window bound IV allows.
const maxAckWinConst = 66000

// packet is tcp_packet for an existing entry: state transition, special
// cases, window check, timeout. dir is 0 for the original direction.
func (t *Table) packet(sh *shard, e *entry, s *Segment, dir, class uint8, now uint32) (Verdict, outcome) {
	old := e.state()
	ns := transitions[dir][class][old]
	v := Verdict{State: old, Reply: dir == 1, SeqAdjust: e.seqAdj, Offloaded: e.flags&efOffloaded != 0}
	if v.Offloaded && class != classACK && class != classNone {
		// The fast path carries only what keeps a connection as it is;
		// this segment opens or closes it, so the flow comes back here.
		v.Offloaded, v.Unoffload = false, true
		e.unoffload()
	}
	ack := s.Ack
	if dir == 0 {
		// The original side (a SYN-proxy client) acks in the cookie's
		// sequence space; the reply side is tracked in the server's.
		ack += e.seqAdj
	}
	skipWindow := false // conntrack's "goto in_window"
	inexactRST := false

	switch ns {
	case StateSynSent:
		if old < StateTimeWait {
			break // first SYN, or a retransmitted one
		}
		// SYN in TIME_WAIT or CLOSE (RFC 1122 §4.2.2.13): the old
		// connection is over; start afresh. conntrack kills and repeats
		// only if a side sent FIN or the last segment was a RST in this
		// direction, and otherwise ignores the SYN and resyncs on the
		// SYN-ACK; both end in a new flow, this way keeps less state.
		return v, outReopen

	case sIG:
		if class == classSYNACK && e.lastIndex() == classSYN &&
			e.lastDir() != dir && ack == e.lastEnd {
			// The SYN-ACK answers a SYN we ignored: both ends are in sync
			// with each other, not with us. Rebuild from the annotated SYN
			// (tcp_packet, case b).
			old, ns = StateSynSent, StateSynRecv
			ld := e.lastDir()
			e.td[ld] = window{end: e.lastEnd, maxend: e.lastEnd, maxwin: max(uint32(e.lastWin), 1)}
			e.tscale[ld] = e.lastOpt() & 0xf
			e.tflags[ld] = e.lastOpt() >> 4
			e.td[dir] = window{}
			e.tflags[dir], e.tscale[dir] = 0, 0
			break
		}
		// Ignored: our entry may be out of sync with the endpoints, so let
		// through what may signal the real connection and note it.
		e.setLast(class, dir)
		e.lastEnd = segEnd(s)
		e.lastWin = s.Window
		if class == classSYN && dir == 0 {
			f, sc := synOptions(s)
			e.setLastOpt(sc | f<<4)
			if old == StateLastAck {
				// A SYN in LAST_ACK draws an RFC 5961 challenge ACK that
				// must not be taken as acking the last FIN.
				e.flags |= efChallenge
			}
		}
		v.Reason = ReasonIgnored
		return v, outKeep

	case sIV:
		v.Action, v.Reason = Drop, ReasonUnexpected
		if old == StateTimeWait || old == StateClose {
			v.Reason = ReasonAlreadyClosed
		}
		return v, outKeep

	case StateTimeWait:
		if old == StateLastAck && class == classACK && e.lastDir() != dir &&
			e.lastIndex() == classSYN && e.flags&efChallenge != 0 {
			e.flags &^= efChallenge
			v.Reason = ReasonIgnored
			return v, outKeep
		}

	case StateSynSent2:
		e.flags |= efSimOpen

	case StateSynRecv:
		if dir == 1 && class == classACK && e.flags&efSimOpen != 0 {
			ns = StateEstablished
		}

	case StateClose:
		if class != classRST {
			break
		}
		if old.closing() {
			// The tuple may already be reused; window data is stale.
			skipWindow = true
			break
		}
		rcv := &e.td[1-dir]
		li := e.lastIndex()
		if e.tflags[1-dir]&tfMaxAckSet != 0 && li != classSYN {
			// RST validation after RFC 5961 §3.2 as conntrack does it: the
			// peer's highest ACK stands in for its RCV.NXT. seq == RCV.NXT
			// resets; below it is invalid; above it but in window passes
			// without closing, so the endpoint can send its challenge ACK
			// and a genuine peer then resets with the exact seq.
			established := old == StateEstablished && e.flags&efAssured != 0
			if s.Seq == 0 && !established {
				break // answers a SYN we let through
			}
			if before(s.Seq, rcv.maxack) {
				v.Action, v.Reason = Drop, ReasonOutOfSequence
				return v, outKeep
			}
			if !established || s.Seq == rcv.maxack {
				break
			}
			if li == classACK && e.lastDir() == dir && s.Seq == e.lastEnd {
				break // RST right after our own data: a RST train
			}
			ns = old
			inexactRST = true
		}
		if ((e.flags&efSeenReply != 0 && li == classSYN) ||
			(e.flags&efAssured == 0 && li == classACK)) && ack == e.lastEnd {
			// RST answering a SYN or ACK we let through while ignoring it.
			skipWindow = true
		}
	}

	// Policy beyond conntrack (ATP's ALREADY_CLOSED): CLOSE admits only a
	// SYN that reopens; TIME_WAIT admits the FIN/ACK/RST retransmissions
	// of the close but no new data.
	if old == StateClose || (old == StateTimeWait && s.PayloadLen > 0 && class != classRST) {
		v.Action, v.Reason = Drop, ReasonAlreadyClosed
		return v, outKeep
	}

	if !skipWindow {
		switch t.inWindow(e, s, dir, class, ack) {
		case winIgnore:
			v.Reason = ReasonIgnored
			return v, outKeep
		case winInvalid:
			v.Action, v.Reason = Drop, ReasonOutOfSequence
			return v, outKeep
		}
	}

	// In window from here on.
	e.setLast(class, dir)
	if class == classACK {
		e.lastEnd = segEnd(s)
		e.lastWin = s.Window
	}
	// conntrack takes any FIN in FIN_WAIT or CLOSE_WAIT for the other
	// side's and any ACK in LAST_ACK for the last one ("might be a
	// retransmitted FIN as well"). That costs conntrack only a timer, as
	// it passes data in TIME_WAIT; here TIME_WAIT refuses new data
	// (ALREADY_CLOSED), so it must mean that both sides sent a FIN and
	// each was acked. Otherwise a half-closed connection whose closed side
	// retransmits its FIN (a tail loss probe does) would be cut while its
	// open side still sends.
	switch {
	case ns == StateLastAck && class == classFIN && old != StateLastAck && e.tflags[1-dir]&tfFin == 0:
		ns = old // the first FIN again: the other side has not closed
	case ns == StateTimeWait && old == StateLastAck && !(e.finAcked(0) && e.finAcked(1)):
		ns = old
	}
	if class == classFIN {
		e.tflags[dir] |= tfFin
	}
	sh.setState(e, ns)
	v.State = ns
	if inexactRST {
		v.Reason = ReasonIgnored
	}

	tmo := t.tmo[ns]
	if class == classRST {
		tmo = t.tmo[StateClose]
	} else if (e.tflags[0]|e.tflags[1])&tfUnack != 0 && tmo > t.tmoUnack {
		tmo = t.tmoUnack
	}
	if e.flags&efSeenReply == 0 {
		if dir == 1 {
			e.flags |= efSeenReply
			if e.flags&efPickedUp != 0 {
				// Both directions seen: leave liberal mode.
				e.tflags[0] &^= tfLiberal
				e.tflags[1] &^= tfLiberal
			}
		}
		if class == classRST {
			// The only reply is a RST (or the client gave up): there is
			// no connection to keep.
			return v, outKill
		}
		if class == classSYN && old == StateSynSent {
			// Do not refresh on a retransmitted SYN, or port reuse could
			// keep the entry alive for ever.
			return v, outKeep
		}
		if ns == StateEstablished && tmo > t.tmoUnack {
			tmo = t.tmoUnack // picked up, no answer yet
		}
	} else if e.flags&efAssured == 0 && (old == StateSynRecv || old == StateEstablished) &&
		ns == StateEstablished {
		e.flags |= efAssured
	}
	e.setDeadline(now + tmo)
	return v, outKeep
}

// finAcked reports whether direction d sent a FIN that its peer acked:
// the peer's highest ACK covers d's highest sequence number, which the
// FIN ends. Where the window data is unknown (a liberal flow whose
// segments failed the checks) it reports false, and the flow stays in
// LAST_ACK until its timer rather than refuse data early.
func (e *entry) finAcked(d uint8) bool {
	p := 1 - d
	return e.tflags[d]&tfFin != 0 && e.tflags[p]&tfMaxAckSet != 0 && !before(e.td[p].maxack, e.td[d].end)
}

// inWindow is tcp_in_window: bounds I–IV after van Rooij, per-direction
// window learning, and window scaling only when both SYNs carried the
// option. ack is already translated by the SYN-proxy offset. The segment
// carries no SACK blocks, so the ACK stands in for the highest SACK edge.
func (t *Table) inWindow(e *entry, s *Segment, dir, class uint8, ack uint32) winResult {
	sender, receiver := &e.td[dir], &e.td[1-dir]
	sf, rf := &e.tflags[dir], &e.tflags[1-dir]
	seq := s.Seq
	end := segEnd(s)
	win := uint32(s.Window)
	syn := s.Flags&FlagSYN != 0
	hasAck := s.Flags&FlagACK != 0

	if sender.maxwin == 0 {
		if syn {
			// SYN-ACK answering a SYN, or the reply SYN of a
			// simultaneous open.
			t.initSender(e, s, dir, end)
			if !hasAck {
				return winAccept
			}
		} else {
			// Mid-stream: learn what we can from this segment.
			sender.end = end
			sender.maxwin = max(win<<e.tscale[dir], 1)
			sender.maxend = end + sender.maxwin
			if receiver.maxwin == 0 {
				receiver.end, receiver.maxend = ack, ack
			} else if ack == receiver.end+1 {
				receiver.end++ // likely a keepalive answer
			}
		}
	} else if syn && after(end, sender.end) &&
		(e.state() == StateSynSent || e.state() == StateSynRecv) {
		// A new SYN (or SYN-ACK) with a later ISN re-initialises this
		// direction (RFC 793: a reinitialised TCP uses larger numbers).
		t.initSender(e, s, dir, end)
		if dir == 1 && !hasAck {
			return winAccept
		}
	}

	if !hasAck {
		ack = receiver.end // pretend it acked what was sent
	} else if s.Flags&FlagRST != 0 && ack == 0 {
		ack = receiver.end // stacks that send RST|ACK with ack 0
	}
	if s.Flags&FlagRST != 0 && seq == 0 && e.state() == StateSynSent {
		seq, end = sender.end, sender.end // RST answering a SYN
	}
	liberal := *sf&tfLiberal != 0
	maxAckWin := max(sender.maxwin, maxAckWinConst)

	// I: the segment starts no later than the receiver's window allows.
	if !before(seq, sender.maxend+1) {
		overshot := end - sender.maxend
		inRecv := receiver.maxwin != 0 && after(end, sender.end-receiver.maxwin-1)
		if inRecv && overshot <= receiver.maxwin &&
			after(ack, receiver.end-maxAckWin-1) && before(ack, receiver.end+1) {
			// Some stacks send a little more than the window allows; if
			// the peer acks it, later ACKs must not fail III, so learn
			// the end (the "N bytes more than expected" case).
			sender.end = end
			*sf |= tfUnack
			return liberalOr(liberal, winIgnore)
		}
		return liberalOr(liberal, winInvalid)
	}
	// III: no ACK of data the receiver never sent.
	if !before(ack, receiver.end+1) {
		return liberalOr(liberal, winInvalid)
	}
	// II: the segment ends above what the receiver already acked (else it
	// is an old retransmission: harmless, ignore).
	if receiver.maxwin != 0 && !after(end, sender.end-receiver.maxwin-1) {
		return liberalOr(liberal, winIgnore)
	}
	// IV: the ACK is not older than one maximum window (overly delayed).
	if !after(ack, receiver.end-maxAckWin-1) {
		return liberalOr(liberal, winIgnore)
	}

	if !syn {
		win <<= e.tscale[dir]
	}
	sender.maxwin = max(sender.maxwin, win)
	if after(end, sender.end) {
		sender.end = end
		*sf |= tfUnack
	}
	if hasAck {
		if *sf&tfMaxAckSet == 0 {
			sender.maxack = ack
			*sf |= tfMaxAckSet
		} else if after(ack, sender.maxack) {
			sender.maxack = ack
		}
	}
	if receiver.maxwin != 0 && after(end, sender.maxend) {
		receiver.maxwin += end - sender.maxend
	}
	if after(ack+win, receiver.maxend-1) {
		receiver.maxend = ack + win
		if win == 0 {
			receiver.maxend++
		}
	}
	if ack == receiver.end {
		*rf &^= tfUnack
	}
	return winAccept
}

func liberalOr(liberal bool, r winResult) winResult {
	if liberal {
		return winAccept
	}
	return r
}

// initSender is tcp_init_sender: (re)initialise a direction from its SYN.
// RFC 7323: scaling applies only if both SYNs carried the option.
func (t *Table) initSender(e *entry, s *Segment, dir uint8, end uint32) {
	sender := &e.td[dir]
	sender.end, sender.maxend = end, end
	sender.maxwin = max(uint32(s.Window), 1)
	f, sc := synOptions(s)
	keep := e.tflags[dir] &^ (tfWScale | tfSACK)
	e.tflags[dir], e.tscale[dir] = keep|f, sc
	if e.tflags[dir]&e.tflags[1-dir]&tfWScale == 0 {
		e.tscale = [2]uint8{}
	}
}
