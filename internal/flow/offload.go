package flow

// Offload: a flow the kernel fast path carries (nf_flow_table's model).
// While a flow is offloaded its plain segments bypass the tracker, so its
// windows go stale. As nft_flow_offload does, an offloaded flow's window
// checks turn liberal for good (they learn, and never reject: segments
// the fast path carried meanwhile cannot be told from invalid ones), and
// when it comes back (a SYN, FIN or RST, which the fast path leaves to the
// tracker, or Unoffload) both directions' windows are forgotten and learnt
// again from the next segments, as flow_offload_fixup_tcp does. The
// deadline is kept by Touch from the fast path's own "last seen".

// Offload marks the segment's flow offloaded if the fast path may carry
// it: established and assured (both sides seen, the handshake completed),
// not offloaded already. It reports whether it did. A SYN-proxied flow is
// established only after the server's SYN-ACK, which set its real offset
// (SetSeqAdjust): the fast path translates with that.
func (t *Table) Offload(s *Segment) bool {
	return t.withEntry(s, func(e *entry) bool {
		if e.state() != StateEstablished || e.flags&efAssured == 0 || e.flags&efOffloaded != 0 {
			return false
		}
		e.flags |= efOffloaded
		e.tflags[0] |= tfLiberal
		e.tflags[1] |= tfLiberal
		return true
	})
}

// withEntry runs fn on the segment's flow under its shard's lock and
// returns what fn returns; false if there is no such flow.
func (t *Table) withEntry(s *Segment, fn func(e *entry) bool) bool {
	k, _ := makeKey(s)
	h := t.h.hash(&k)
	sh := t.shardOf(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	_, e := sh.find(&k, h)
	return e != nil && fn(e)
}

// Unoffload takes the segment's flow back from the fast path (e.g. after
// the fast path dropped it from its map). It reports whether the flow was
// offloaded.
func (t *Table) Unoffload(s *Segment) bool {
	return t.withEntry(s, func(e *entry) bool {
		if e.flags&efOffloaded == 0 {
			return false
		}
		e.unoffload()
		return true
	})
}

// unoffload clears the mark and forgets the windows (maxwin 0: the next
// segment of each direction is taken as mid-stream, inWindow's pickup)
// and the highest ACKs, which RST validation would trust.
func (e *entry) unoffload() {
	e.flags &^= efOffloaded
	e.td[0].maxwin, e.td[1].maxwin = 0, 0
	e.tflags[0] &^= tfMaxAckSet
	e.tflags[1] &^= tfMaxAckSet
}

// Touch reports whether the segment's flow exists and is offloaded, and if
// active (the fast path carried a segment of it lately) extends its
// deadline as a segment in its current state would: the tracker sees none
// of them.
func (t *Table) Touch(s *Segment, now uint32, active bool) bool {
	return t.withEntry(s, func(e *entry) bool {
		if e.flags&efOffloaded == 0 || expired(e.deadline(), now) {
			return false
		}
		if active {
			e.setDeadline(now + t.tmo[e.state()])
		}
		return true
	})
}

// Offloaded reports whether the segment's flow is offloaded.
func (t *Table) Offloaded(s *Segment) bool {
	return t.withEntry(s, func(e *entry) bool { return e.flags&efOffloaded != 0 })
}
