package flow

// The open-addressing slots of a shard: where a key's home is, how a lookup
// walks from it, and how entries are inserted, removed (backward shift) and
// evicted when a shard is full.

import (
	"sync"
	"sync/atomic"
)

type shardStats struct {
	inserts, evictions, tableFull, expired, reset uint64
	states                                        [NumStates]int64
}

// shard is an independent open-addressing table with its own lock.
type shard struct {
	mu sync.Mutex
	// ver is odd while remove moves index slots (a backward shift can make
	// a present flow briefly invisible to a lock-free probe); a reader that
	// found nothing checks ver did not change.
	ver atomic.Uint32
	// index is a linear-probing array at ≤ 50% load. A slot is
	// tag<<16 | entry index+1; 0 is empty.
	index   []uint32
	entries []entry
	free    uint32 // free list head, entry index+1
	live    int
	hand    uint32 // eviction clock hand
	st      shardStats
	_       [64]byte // keep neighbouring shards' locks apart
}

func (t *Table) shardOf(h uint64) *shard {
	// For one shard shift is 64 and Go defines x>>64 as 0.
	return &t.shards[h>>t.shift]
}

func (sh *shard) home(h uint64) uint32 {
	return uint32((h & 0xffffffff) * uint64(len(sh.index)) >> 32)
}

func slotTag(h uint64) uint32 { return uint32(h>>16) & 0xffff0000 }

// find returns the flow's index position and entry, or the empty slot where
// it would be inserted and nil.
func (sh *shard) find(k *key, h uint64) (uint32, *entry) {
	n := uint32(len(sh.index))
	tag := slotTag(h)
	i := sh.home(h)
	for {
		s := sh.index[i]
		if s == 0 {
			return i, nil
		}
		if s&0xffff0000 == tag {
			e := &sh.entries[s&0xffff-1]
			if e.addr == k.addr && e.ports == k.ports {
				return i, e
			}
		}
		if i++; i == n {
			i = 0
		}
	}
}

// posOf finds the index slot that points at entry ei.
func (sh *shard) posOf(t *Table, ei uint32) uint32 {
	k := sh.entries[ei].key()
	n := uint32(len(sh.index))
	i := sh.home(t.h.hash(&k))
	for sh.index[i]&0xffff != ei+1 {
		if i++; i == n {
			i = 0
		}
	}
	return i
}

// remove frees the entry at index slot pos and closes the gap with a
// backward shift, so lookups never need tombstones.
func (sh *shard) remove(t *Table, pos uint32) {
	n := uint32(len(sh.index))
	ei := sh.index[pos]&0xffff - 1
	e := &sh.entries[ei]
	sh.st.states[e.state()]--
	sh.ver.Add(1)
	e.free(sh.free)
	sh.free = ei + 1
	sh.live--

	j := pos
	for i := pos; ; {
		if i++; i == n {
			i = 0
		}
		s := sh.index[i]
		if s == 0 {
			break
		}
		k := sh.entries[s&0xffff-1].key()
		hm := sh.home(t.h.hash(&k))
		// Move s into the hole at j unless its home lies cyclically in (j, i].
		var stays bool
		if j < i {
			stays = j < hm && hm <= i
		} else {
			stays = j < hm || hm <= i
		}
		if !stays {
			atomic.StoreUint32(&sh.index[j], s)
			j = i
		}
	}
	atomic.StoreUint32(&sh.index[j], 0)
	sh.ver.Add(1)
}

// insert takes a free entry for key k, evicting if needed. pos must be the
// empty slot find returned. It returns nil when the shard is full.
func (t *Table) insert(sh *shard, pos uint32, k *key, h uint64, now uint32) *entry {
	if sh.free == 0 {
		if !t.evict(sh, now) {
			sh.st.tableFull++
			return nil
		}
		pos, _ = sh.find(k, h) // the backward shift may have moved the hole
	}
	ei := sh.free - 1
	e := &sh.entries[ei]
	sh.free = e.deadline()
	e.setKey(k)
	e.setDeadline(0)
	// Publish the slot last: a reader that sees it sees the key.
	atomic.StoreUint32(&sh.index[pos], slotTag(h)|(ei+1))
	sh.live++
	sh.st.inserts++
	return e
}

// evict implements the table-full policy: sample evictScan entries from a
// clock hand and drop, in order of preference, an expired entry, a closing
// one (conntrack's tcp_can_early_drop set), or an unassured one (a
// handshake that never completed, a pickup that never saw a reply: what a
// SYN or ACK flood creates), picking the one closest to expiry. Assured
// open flows are never evicted: the new flow is refused instead.
func (t *Table) evict(sh *shard, now uint32) bool {
	const none = ^uint32(0)
	victim, best := none, 0
	var bestDL uint32
	n := uint32(len(sh.entries))
	for range min(evictScan, int(n)) {
		i := sh.hand
		if sh.hand++; sh.hand == n {
			sh.hand = 0
		}
		e := &sh.entries[i]
		if e.state() == StateNone {
			continue
		}
		rank := 0
		switch {
		case expired(e.deadline(), now):
			rank = 3
		case e.state().closing():
			rank = 2
		case e.flags&efAssured == 0:
			rank = 1
		}
		if rank > best || (rank == best && rank > 0 && before(e.deadline(), bestDL)) {
			victim, best, bestDL = i, rank, e.deadline()
			if rank == 3 {
				break
			}
		}
	}
	if victim == none {
		return false
	}
	if best == 3 {
		sh.st.expired++
	} else {
		sh.st.evictions++
	}
	sh.remove(t, sh.posOf(t, victim))
	return true
}
