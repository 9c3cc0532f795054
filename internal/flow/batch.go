package flow

import (
	"unsafe"

	"github.com/xskgate/xskgate/internal/prefetch"
)

// Batch calls are software-pipelined in three stages that run lookAhead
// segments apart: stage 1 hashes segment i and prefetches its home index
// line; stage 2 walks the probe sequence of segment i-lookAhead (its index
// line has arrived meanwhile) to the first slot whose tag matches and
// prefetches that entry's lines; stage 3 does the real work for segment
// i-2*lookAhead, whose lines are then in cache. A prefetch, unlike a load
// that misses, does not hold up the core, so about 2*lookAhead misses of
// different flows are in flight while the core computes, instead of two
// misses per segment one after the other. The prefetches are hints: a
// concurrent writer can at worst make one fetch the wrong line.
const (
	lookAhead = 8
	pipeMask  = 31 // ring size - 1; the ring holds 2*lookAhead+1 segments
)

// The ring must be a power of two larger than 2*lookAhead.
var _ [pipeMask + 1 - (2*lookAhead + 1)]struct{}
var _ [0]struct{} = [(pipeMask + 1) & pipeMask]struct{}{}

type pipe struct {
	s [pipeMask + 1]pipeSlot
}

type pipeSlot struct {
	k    key
	h    uint64
	home uint32
	lo   bool
}

// fetchIndex is stage 1 for segment s.
func (t *Table) fetchIndex(q *pipeSlot, s *Segment) {
	q.lo = q.k.set(s)
	q.h = t.h.hash(&q.k)
	sh := t.shardOf(q.h)
	q.home = sh.home(q.h)
	// Only the home slot's line: a probe rarely runs past it, and a
	// second prefetch per segment costs more than it saves (the core's
	// miss buffers are the bottleneck).
	prefetch.Line(uintptr(unsafe.Pointer(&sh.index[q.home])))
}

// fetchEntry is stage 2: walk q's probe sequence (without the lock, with
// atomic loads) to the first slot whose tag matches and prefetch the
// entry's first line and, for Track, the rest of it.
func (t *Table) fetchEntry(q *pipeSlot, whole bool) {
	sh := t.shardOf(q.h)
	index := sh.index
	n := uint32(len(index))
	tag := slotTag(q.h)
	j := q.home
	for range 8 {
		s := loadSlot(&index[j])
		if s == 0 {
			return
		}
		if s&0xffff0000 == tag {
			e := &sh.entries[s&0xffff-1]
			p := uintptr(unsafe.Pointer(e))
			if whole {
				// An entry spans up to three lines.
				prefetch.Lines3(p, p+unsafe.Sizeof(*e)/2, p+unsafe.Sizeof(*e)-1)
			} else {
				// The key and sd span up to two.
				prefetch.Lines2(p, uintptr(unsafe.Pointer(&e.ports)))
			}
			return
		}
		if j++; j == n {
			j = 0
		}
	}
}

// TrackBatch is Track for a receive batch: out[i] is the verdict for
// segs[i], and segments are applied in order, so several segments of one
// flow in a batch behave exactly as with Track (the pipeline only
// prefetches ahead). out must be at least as long as segs.
func (t *Table) TrackBatch(segs []Segment, now uint32, out []Verdict) {
	_ = out[:len(segs)]
	var p pipe
	n := len(segs)
	for i := 0; i < n+2*lookAhead; i++ {
		if i < n {
			t.fetchIndex(&p.s[i&pipeMask], &segs[i])
		}
		if j := i - lookAhead; j >= 0 && j < n {
			t.fetchEntry(&p.s[j&pipeMask], true)
		}
		if j := i - 2*lookAhead; j >= 0 {
			q := &p.s[j&pipeMask]
			s := &segs[j]
			f := s.Flags & flagMask
			if !validFlags[f] {
				out[j] = Verdict{Action: Drop, Reason: ReasonInvalidFlags}
				continue
			}
			sh := t.shardOf(q.h)
			sh.mu.Lock()
			out[j] = t.trackLocked(sh, s, &q.k, q.h, q.lo, flagClass(f), now)
			sh.mu.Unlock()
		}
	}
}

// LookupBatch is Lookup for a batch, pipelined as TrackBatch. out must be
// at least as long as segs.
func (t *Table) LookupBatch(segs []Segment, now uint32, out []LookupResult) {
	_ = out[:len(segs)]
	var p pipe
	n := len(segs)
	for i := 0; i < n+2*lookAhead; i++ {
		if i < n {
			t.fetchIndex(&p.s[i&pipeMask], &segs[i])
		}
		if j := i - lookAhead; j >= 0 && j < n {
			t.fetchEntry(&p.s[j&pipeMask], false)
		}
		if j := i - 2*lookAhead; j >= 0 {
			q := &p.s[j&pipeMask]
			st, ok := t.lookupKey(&q.k, q.h, now)
			out[j] = LookupResult{State: st, Found: ok}
		}
	}
}

// Prepared is one segment's key and hash, computed by Prepare for a later
// TrackPrepared. It serves a caller that decides per segment what to do
// before tracking it, so cannot hand the tracker its whole batch: it still
// gets the pipeline's overlapping misses, and each segment is hashed once.
type Prepared struct {
	q  pipeSlot
	ok bool
}

// Prepare computes the key and hash of each segs[i] into out[i] and
// prefetches the index line and entry Track will read, pipelined as
// TrackBatch's first two stages. Segments whose Src is not valid (the
// caller has nothing to track there) are skipped. out must be at least as
// long as segs.
func (t *Table) Prepare(segs []Segment, out []Prepared) {
	_ = out[:len(segs)]
	n := len(segs)
	for i := 0; i < n+lookAhead; i++ {
		if i < n {
			out[i].ok = segs[i].Src.IsValid()
			if out[i].ok {
				t.fetchIndex(&out[i].q, &segs[i])
			}
		}
		if j := i - lookAhead; j >= 0 && j < n && out[j].ok {
			t.fetchEntry(&out[j].q, true)
		}
	}
}

// TrackPrepared is Track for s, which Prepare saw as it is now and put in
// p. A p that Prepare skipped is tracked as Track does.
func (t *Table) TrackPrepared(s *Segment, p *Prepared, now uint32) Verdict {
	if !p.ok {
		return t.Track(s, now)
	}
	f := s.Flags & flagMask
	if !validFlags[f] {
		return Verdict{Action: Drop, Reason: ReasonInvalidFlags}
	}
	sh := t.shardOf(p.q.h)
	sh.mu.Lock()
	v := t.trackLocked(sh, s, &p.q.k, p.q.h, p.q.lo, flagClass(f), now)
	sh.mu.Unlock()
	return v
}
