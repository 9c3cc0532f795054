package flow

import "sync/atomic"

// Lookups read the table without the shard lock. A probe loads index slots
// and entry words with sync/atomic (plain moves on amd64) and validates:
//
//   - a hit is trusted when the entry's sd word, which carries the state,
//     the deadline and a sequence number bumped whenever the entry is freed,
//     reads the same before and after the key compare (see entry);
//   - a miss is trusted when the shard's ver did not change during the
//     probe: only remove moves slots, and it keeps ver odd while it does.
//
// An optimistic attempt that fails validation is repeated a few times and
// then done under the lock, so a reader always finishes.

// optimisticTries bounds the lock-free attempts of one lookup.
const optimisticTries = 4

// probeResult is the outcome of one optimistic probe.
type probeResult uint8

const (
	probeMiss probeResult = iota
	probeHit
	probeRetry
)

// lookupFast is one optimistic probe for k. On probeHit w is the entry's
// sd word.
func (sh *shard) lookupFast(k *key, h uint64) (probeResult, uint64) {
	v := sh.ver.Load()
	if v&1 != 0 {
		return probeRetry, 0
	}
	index := sh.index
	n := uint32(len(index))
	tag := slotTag(h)
	i := sh.home(h)
	for range n {
		s := atomic.LoadUint32(&index[i])
		if s == 0 {
			break
		}
		if s&0xffff0000 == tag {
			if r, w := sh.matchFast(s, k); r != probeMiss {
				return r, w
			}
		}
		if i++; i == n {
			i = 0
		}
	}
	if sh.ver.Load() != v {
		return probeRetry, 0
	}
	return probeMiss, 0
}

// matchFast compares the entry slot s points at with k.
func (sh *shard) matchFast(s uint32, k *key) (probeResult, uint64) {
	e := &sh.entries[s&0xffff-1]
	w := atomic.LoadUint64(&e.sd)
	if State(w>>sdState) == StateNone {
		return probeMiss, 0
	}
	if atomic.LoadUint64(&e.addr[0]) != k.addr[0] || atomic.LoadUint64(&e.addr[1]) != k.addr[1] ||
		atomic.LoadUint64(&e.addr[2]) != k.addr[2] || atomic.LoadUint64(&e.addr[3]) != k.addr[3] ||
		atomic.LoadUint32(&e.ports) != k.ports {
		// A torn or stale key cannot hide the flow: the key of a live
		// entry changes only after remove, which moves ver.
		return probeMiss, 0
	}
	if atomic.LoadUint64(&e.sd) != w {
		return probeRetry, 0
	}
	return probeHit, w
}

// lookupKey finds k: optimistically, then under the lock.
func (t *Table) lookupKey(k *key, h uint64, now uint32) (State, bool) {
	sh := t.shardOf(h)
	for range optimisticTries {
		switch r, w := sh.lookupFast(k, h); r {
		case probeHit:
			st, dl := sdFields(w)
			if expired(dl, now) {
				return StateNone, false
			}
			return st, true
		case probeMiss:
			return StateNone, false
		}
	}
	return t.lookupLocked(sh, k, h, now)
}

func (t *Table) lookupLocked(sh *shard, k *key, h uint64, now uint32) (State, bool) {
	sh.mu.Lock()
	_, e := sh.find(k, h)
	st, ok := StateNone, false
	if e != nil && !expired(e.deadline(), now) {
		st, ok = e.state(), true
	}
	sh.mu.Unlock()
	return st, ok
}

// Lookup returns the state of the segment's flow without changing it.
// Expired flows are reported as absent. It takes no lock.
func (t *Table) Lookup(s *Segment, now uint32) (State, bool) {
	var k key
	k.set(s)
	return t.lookupKey(&k, t.h.hash(&k), now)
}

// LookupResult is one answer of LookupBatch.
type LookupResult struct {
	State State
	Found bool
}

// loadSlot reads an index slot without the lock.
func loadSlot(p *uint32) uint32 { return atomic.LoadUint32(p) }
