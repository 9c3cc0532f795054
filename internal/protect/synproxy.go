package protect

import (
	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/flow"
	"github.com/xskgate/xskgate/internal/packet"
)

// synFlood meters an inbound SYN against its rule. done means the decision
// is final (dropped or bounced); otherwise the caller tracks the SYN, and a
// non-OK reason in d is what it counts (monitor, admitted retransmission).
func (i *Inspector) synFlood(w *workerState, rs *ruleset, r *rule, pk *engine.Packet, now int64) (d decision, done bool) {
	p := w.pkt
	// Both meters see every SYN, so either can trip.
	over := r.syn.over(now)
	if r.perSource {
		var m [3]uint64
		m[0], m[1] = addrWords(p.Src)
		m[2] = uint64(r.idx)
		h := i.key.sum(m[:])
		if hit(&i.srcTat[h&(srcSlots-1)], r.srcRate, now) {
			over = true
			if f := i.first.Load(); f != nil && r.synMode == ModeMitigate {
				f.penalize(h, p.Src, now)
			}
		}
	}
	if !over {
		return decision{}, false
	}
	if r.synMode == ModeMonitor {
		v := vChallenge
		if r.action == ActionRetransmit {
			v = vDrop
		}
		return decision{reason: rChallengeNeeded, verdict: v, outcome: vPass, rule: r}, false
	}
	// A SYN of a handshake already under way (retransmitted after being
	// admitted) belongs to the tracker.
	if st, ok := i.table.Lookup(w.seg, tableNow(now)); ok && st.Phase() == "new" {
		return decision{}, false
	}
	if r.action == ActionRetransmit {
		if i.retransmitted(w, rs, r, now) {
			return decision{reason: rRetransmitPassed, rule: r}, false
		}
		pk.Verdict = engine.Drop
		return decision{reason: rChallengeNeeded, verdict: vDrop, outcome: vDrop, rule: r}, true
	}
	return i.bounceCookie(w, rs, r, pk, rChallengeNeeded, now), true
}

// bounceCookie answers the SYN in w.pkt with a cookie SYN-ACK, within the
// challenge budget; why is the reason counted when it goes out.
func (i *Inspector) bounceCookie(w *workerState, rs *ruleset, r *rule, pk *engine.Packet, why reason, now int64) decision {
	if i.passedAllow(rs, w.pkt.Src, now) {
		w.c.cookies[cPassed].inc()
	} else if !rs.challenge.allow(now) {
		w.c.cookies[cRateLimited].inc()
		pk.Verdict = engine.Drop
		return decision{reason: rChallengeRateLimited, verdict: vChallenge, outcome: vDrop, rule: r}
	}
	pk.CompleteChecksum() // before any rewrite (engine.Packet)
	n := i.challenge(w, rs, pk.Data, now)
	if n == 0 {
		pk.Verdict = engine.Drop
		return decision{reason: why, verdict: vChallenge, outcome: vDrop, rule: r}
	}
	pk.Data, pk.Len, pk.Verdict = pk.Data[:n], uint32(n), engine.Bounce
	w.c.cookies[cSent].inc()
	if i.lastChallenge.Load() < now {
		i.lastChallenge.Store(now)
	}
	return decision{reason: why, verdict: vChallenge, outcome: vChallenge, rule: r}
}

// tableFull applies protection.on_table_full to an inbound segment whose
// new flow the full table refused (every entry it may evict is an
// assured, open flow). A SYN is challenged or dropped by its rule's SYN
// protection mode, or passed; other segments (pickup) go to the
// out-of-state rule unless the action is pass.
func (i *Inspector) tableFull(w *workerState, rs *ruleset, r *rule, pk *engine.Packet, now int64) decision {
	d := decision{reason: rTableFull, rule: r}
	if rs.onFull == TableFullPass || !rs.enabled {
		return d
	}
	if w.seg.Flags&synAckMask != packet.SYN {
		return i.outOfState(pk, rs, r, rTableFull, now)
	}
	if r == nil || r.synMode == ModeDisabled {
		return d
	}
	d.verdict = vChallenge
	if rs.onFull == TableFullDrop {
		d.verdict = vDrop
	}
	if r.synMode == ModeMonitor {
		return d
	}
	if d.verdict == vDrop {
		d.outcome = vDrop
		pk.Verdict = engine.Drop
		return d
	}
	return i.bounceCookie(w, rs, r, pk, rTableFull, now)
}

// challenge rewrites the SYN in frame (parsed in w.pkt) into the cookie
// SYN-ACK and returns its length, 0 if it does not fit.
func (i *Inspector) challenge(w *workerState, rs *ruleset, frame []byte, now int64) int {
	p := w.pkt
	o := p.TCP.Opts
	cmss := uint16(536)
	if p.IPVersion == 6 {
		cmss = 1220
	}
	if o.Has&packet.HasMSS != 0 {
		cmss = o.MSS
	}
	co := cookieOpts{mssIdx: mssIndex(cmss), wscale: wscaleNone, sack: rs.proxy.sack && o.Has&packet.HasSACKPerm != 0}
	if o.Has&packet.HasWScale != 0 {
		co.wscale = min(o.WScale, 14)
	}
	t := tuple{p.Src, p.Dst, p.SrcPort, p.DstPort}
	cookie := i.key.makeCookie(&t, p.TCP.Seq, co, now)
	mss := rs.proxy.mss
	if p.IPVersion == 6 {
		mss -= 20
	}
	ws := uint8(wscaleNone)
	if co.wscale != wscaleNone {
		ws = rs.proxy.wscale
	}
	var ob [12]byte
	n := synOpts(ob[:], mss, ws, co.sack)
	return reply(frame, p, tcpFields{seq: cookie, ack: p.TCP.Seq + 1, flags: packet.SYN | packet.ACK, window: rs.proxy.window}, ob[:n])
}

// cookieACK handles a pure inbound ACK while cookies may be live. With a
// valid cookie and no flow yet, the ACK becomes the SYN to the server and
// a half-open proxied flow is inserted; the flow's SeqAdjust temporarily
// holds the cookie ISN, which marks it as proxied until the server's
// SYN-ACK replaces it with the real delta (serverSynAck). A cookie of
// exactly zero would not be recognised; its odds are 2^-32 per handshake.
func (i *Inspector) cookieACK(w *workerState, rs *ruleset, r *rule, pk *engine.Packet, now int64) (decision, bool) {
	p := w.pkt
	t := tuple{p.Src, p.Dst, p.SrcPort, p.DstPort}
	isn, cookie := p.TCP.Seq-1, p.TCP.Ack-1
	o, ok := i.key.checkCookie(&t, isn, cookie, now)
	if !ok {
		return decision{}, false
	}
	sec := tableNow(now)
	if _, exists := i.table.Lookup(w.seg, sec); exists {
		return decision{}, false
	}
	ws := int8(-1)
	if o.wscale != wscaleNone {
		ws = int8(o.wscale)
	}
	v := i.table.Insert(w.seg, flow.Open{State: flow.StateSynSent, ClientISN: isn, ClientWScale: ws,
		ClientWindow: clientWindow(p, o), SACKPerm: o.sack, SeqAdjust: cookie}, sec)
	if v.Reason == flow.ReasonTableFull {
		pk.Verdict = engine.Drop
		return decision{reason: rTableFull, verdict: vDrop, outcome: vDrop, rule: r}, true
	}
	if !v.New {
		return decision{}, false // another worker raced us; the tracker decides
	}
	i.tracked(w, v)
	i.pass(rs, p.Src, now)
	if !synToServer(pk, p, isn, o) {
		pk.Verdict = engine.Drop
		return decision{reason: rChallengePassed, verdict: vPass, outcome: vDrop, rule: r}, true
	}
	w.c.cookies[cValid].inc()
	return decision{reason: rChallengePassed, rule: r}, true
}

// resendSyn turns a client segment of a proxied flow whose server has not
// answered (the flow's SeqAdjust still holds the cookie) into the SYN to
// the server again: the first may have been lost, and the proxy keeps no
// timer, so the client's own segments are what retransmit it. Under the
// window-0 SYN-ACK they are zero-window probes (seq = ISN, the byte before
// the window), otherwise data or ACKs at ISN+1; both ack cookie+1. The
// cookie, checked against both candidate ISNs, says the segment is the
// client's and restores its options. A segment carrying SYN, FIN or RST,
// or a cookie gone stale (48 s), is not resent for. The SYN goes in the
// segment's own frame, its payload dropped: the client retransmits data.
func (i *Inspector) resendSyn(w *workerState, pk *engine.Packet, cookie uint32, now int64) bool {
	p := w.pkt
	if p.TCP.Flags&(packet.SYN|packet.FIN|packet.RST|packet.ACK) != packet.ACK || p.TCP.Ack != cookie+1 {
		return false
	}
	t := tuple{p.Src, p.Dst, p.SrcPort, p.DstPort}
	isn := p.TCP.Seq - 1
	o, ok := i.key.checkCookie(&t, isn, cookie, now)
	if !ok {
		isn = p.TCP.Seq
		if o, ok = i.key.checkCookie(&t, isn, cookie, now); !ok {
			return false
		}
	}
	if !synToServer(pk, p, isn, o) {
		return false
	}
	w.c.proxy[pSynResent].inc()
	return true
}

// synToServer rewrites the client segment in pk (parsed in p) into the SYN
// to the server for the client's ISN isn, with the options its cookie
// restored; cookieACK sends it first and resendSyn again. false: the SYN
// does not fit the frame, which is left as it was.
func synToServer(pk *engine.Packet, p *packet.Packet, isn uint32, o cookieOpts) bool {
	var ob [12]byte
	n := synOpts(ob[:], mssTable[o.mssIdx], o.wscale, o.sack)
	pk.CompleteChecksum()
	l := forwardAs(pk.Data, p, tcpFields{seq: isn, flags: packet.SYN, window: clientWindow(p, o)}, ob[:n])
	if l == 0 {
		return false
	}
	pk.Data, pk.Len = pk.Data[:l], uint32(l)
	return true
}

// clientWindow is the window the client's segment in p offers, in bytes,
// capped for a SYN's unscaled window field: a window field is scaled by
// its sender's own shift, which the cookie carries.
func clientWindow(p *packet.Packet, o cookieOpts) uint16 {
	win := uint32(p.TCP.Window)
	if o.wscale != wscaleNone {
		win <<= o.wscale
	}
	return uint16(min(win, 65535))
}

// serverSynAck handles the server's SYN-ACK on a proxied flow: it records
// the sequence delta and turns the frame into the ACK that completes the
// server's handshake, bounced back into inner. The client already holds
// the proxy's SYN-ACK, so it never sees this one; it gets the window
// update that opens the window the cookie SYN-ACK left at zero, sent in a
// spare frame (windowUpdate). A retransmitted SYN-ACK (our ACK was lost)
// is recognised because seq minus the stored delta is again a valid
// cookie, and is answered the same way, update included.
func (i *Inspector) serverSynAck(w *workerState, rs *ruleset, pk *engine.Packet, v flow.Verdict, now int64) (decision, bool) {
	p := w.pkt
	t := tuple{p.Dst, p.Src, p.DstPort, p.SrcPort}
	isn := p.TCP.Ack - 1
	cookie := v.SeqAdjust // the marker of a flow whose server has not answered
	o, ok := i.key.checkCookie(&t, isn, cookie, now)
	if ok {
		if !i.table.SetSeqAdjust(w.seg, p.TCP.Seq-cookie) {
			return decision{}, false
		}
	} else {
		cookie = p.TCP.Seq - v.SeqAdjust
		if o, ok = i.key.checkCookie(&t, isn, cookie, now); !ok {
			return decision{}, false
		}
	}
	// Before the frame is rewritten: the update is built from it.
	i.windowUpdate(w, rs, pk.Data, o, cookie)
	win := uint16(65535)
	if o.wscale != wscaleNone && p.TCP.Opts.Has&packet.HasWScale != 0 {
		// Scaling is on: about 64 KiB until the client's next segment
		// carries its real window.
		win = uint16(max(65535>>o.wscale, 1))
	}
	pk.CompleteChecksum()
	n := reply(pk.Data, p, tcpFields{seq: p.TCP.Ack, ack: p.TCP.Seq + 1, flags: packet.ACK, window: win}, nil)
	if n == 0 {
		pk.Verdict = engine.Drop
		return decision{reason: rProxyEstablished, verdict: vPass, outcome: vDrop}, true
	}
	pk.Data, pk.Len, pk.Verdict = pk.Data[:n], uint32(n), engine.Bounce
	return decision{reason: rProxyEstablished}, true
}
