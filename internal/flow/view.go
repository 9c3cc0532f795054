package flow

// What the table shows of itself: its size, counters and memory, and each
// flow for xskgate flows.

import (
	"net/netip"
	"unsafe"
)

// Len returns the number of flows held, including expired ones not yet
// reclaimed.
func (t *Table) Len() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += sh.live
		sh.mu.Unlock()
	}
	return n
}

// Capacity returns the number of entries allocated: Config.Capacity plus
// the per-shard headroom.
func (t *Table) Capacity() int { return t.capacity }

// Stats are cumulative counters and a snapshot of flows per state.
type Stats struct {
	Capacity  int
	Flows     int
	Inserts   uint64 // flows created
	Evictions uint64 // flows dropped early to make room
	TableFull uint64 // new flows refused
	Expired   uint64 // flows removed by timeout (lazily, by Expire, or as eviction victims)
	Reset     uint64 // flows deleted by a RST before any reply (nf_ct_kill_acct)
	States    [NumStates]int
}

// Stats sums the shards' counters.
func (t *Table) Stats() Stats {
	st := Stats{Capacity: t.capacity}
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		st.Flows += sh.live
		st.Inserts += sh.st.inserts
		st.Evictions += sh.st.evictions
		st.TableFull += sh.st.tableFull
		st.Expired += sh.st.expired
		st.Reset += sh.st.reset
		for s, n := range sh.st.states {
			st.States[s] += int(n)
		}
		sh.mu.Unlock()
	}
	return st
}

// MemoryBytes returns the bytes allocated by New.
func (t *Table) MemoryBytes() int {
	return int(unsafe.Sizeof(*t)) + len(t.shards)*int(unsafe.Sizeof(shard{})) + t.memBytes
}

// MemoryPerFlow returns MemoryBytes divided by Config.Capacity.
func (t *Table) MemoryPerFlow() float64 {
	return float64(t.MemoryBytes()) / float64(t.requested)
}

// FlowInfo describes a flow for listings. Src/Dst are the original
// direction (the side that sent the first segment seen).
type FlowInfo struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Dir              Dir // physical direction of the original side
	State            State
	Age              uint32    // seconds since creation
	ExpiresIn        uint32    // seconds; 0 if already expired
	Packets          [2]uint32 // original, reply
	PickedUp         bool
	Assured          bool
	// Offloaded: the kernel fast path carries its plain segments, which
	// Packets then does not count.
	Offloaded bool
	SeqAdjust uint32
}

// Range calls fn for each flow until fn returns false. now computes Age and
// ExpiresIn. A shard's flows are copied out under its lock and fn runs
// unlocked, so fn may call back into the table; flows that change while
// Range runs may be seen in either version.
func (t *Table) Range(now uint32, fn func(FlowInfo) bool) {
	var buf []FlowInfo
	for i := range t.shards {
		sh := &t.shards[i]
		buf = buf[:0]
		sh.mu.Lock()
		for j := range sh.entries {
			e := &sh.entries[j]
			if e.state() != StateNone {
				buf = append(buf, e.info(now))
			}
		}
		sh.mu.Unlock()
		for _, fi := range buf {
			if !fn(fi) {
				return
			}
		}
	}
}

func (e *entry) info(now uint32) FlowInfo {
	lo := wordsAddr(e.addr[0], e.addr[1])
	hi := wordsAddr(e.addr[2], e.addr[3])
	lp, hp := uint16(e.ports>>16), uint16(e.ports)
	fi := FlowInfo{
		Src: lo, Dst: hi, SrcPort: lp, DstPort: hp,
		State:     e.state(),
		Age:       now - e.created,
		Packets:   e.pkts,
		PickedUp:  e.flags&efPickedUp != 0,
		Assured:   e.flags&efAssured != 0,
		Offloaded: e.flags&efOffloaded != 0,
		SeqAdjust: e.seqAdj,
	}
	if e.flags&efOrigLo == 0 {
		fi.Src, fi.Dst, fi.SrcPort, fi.DstPort = hi, lo, hp, lp
	}
	if e.flags&efOrigOutbound != 0 {
		fi.Dir = Outbound
	}
	if !expired(e.deadline(), now) {
		fi.ExpiresIn = e.deadline() - now
	}
	return fi
}
