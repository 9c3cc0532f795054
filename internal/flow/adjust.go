package flow

// Proxied describes a flow for whoever translates a packet that refers to
// it without being one of its segments: an ICMP error quoting a segment
// the gate forwarded, whose SYN-proxy offset must be undone.
type Proxied struct {
	State State
	// Reply is set when the referred segment (the Segment given to
	// ProxiedOf) travels in the flow's reply direction.
	Reply bool
	// SeqAdjust is the flow's SYN-proxy offset (see SetSeqAdjust); zero
	// for flows the proxy did not set up.
	SeqAdjust uint32
}

// ProxiedOf returns the flow the segment s belongs to (either direction)
// without changing it; ok is false when there is none or it expired. It
// takes the shard's lock: it serves rare packets (ICMP errors), not every
// segment, and reads a field the lock-free lookup does not validate.
func (t *Table) ProxiedOf(s *Segment, now uint32) (p Proxied, ok bool) {
	k, senderLo := makeKey(s)
	h := t.h.hash(&k)
	sh := t.shardOf(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	_, e := sh.find(&k, h)
	if e == nil || expired(e.deadline(), now) {
		return Proxied{}, false
	}
	return Proxied{State: e.state(), Reply: senderLo != (e.flags&efOrigLo != 0), SeqAdjust: e.seqAdj}, true
}
