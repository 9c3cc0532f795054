package flow

// batchChunk is how many segments a batch call hashes and warms at once:
// enough independent cache misses in flight to hide DRAM latency, few
// enough that the warmed lines are still in L1/L2 when they are used.
const batchChunk = 16

type chunk struct {
	k  [batchChunk]key
	h  [batchChunk]uint64
	lo [batchChunk]bool
	n  int
}

func (t *Table) prepare(c *chunk, segs []Segment) {
	c.n = len(segs)
	for i := range segs {
		c.k[i], c.lo[i] = makeKey(&segs[i])
		c.h[i] = t.h.hash(&c.k[i])
	}
	warm(t, c)
}

// TrackBatch is Track for a receive batch: out[i] is the verdict for
// segs[i], and segments are applied in order, so several segments of one
// flow in a batch behave exactly as with Track. Hashing a chunk of segments
// first and touching their index slots and entries before taking any lock
// lets the CPU overlap the cache misses of different flows, which the
// per-segment lock (a full barrier) otherwise serialises. out must be at
// least as long as segs.
func (t *Table) TrackBatch(segs []Segment, now uint32, out []Verdict) {
	_ = out[:len(segs)]
	var c chunk
	for base := 0; base < len(segs); base += batchChunk {
		part := segs[base:min(base+batchChunk, len(segs))]
		t.prepare(&c, part)
		for i := range part {
			s := &part[i]
			f := s.Flags & flagMask
			if !validFlags[f] {
				out[base+i] = Verdict{Action: Drop, Reason: ReasonInvalidFlags}
				continue
			}
			sh := t.shardOf(c.h[i])
			sh.mu.Lock()
			out[base+i] = t.trackLocked(sh, s, &c.k[i], c.h[i], c.lo[i], flagClass(f), now)
			sh.mu.Unlock()
		}
	}
}

// LookupResult is one answer of LookupBatch.
type LookupResult struct {
	State State
	Found bool
}

// LookupBatch is Lookup for a batch; see TrackBatch. out must be at least
// as long as segs.
func (t *Table) LookupBatch(segs []Segment, now uint32, out []LookupResult) {
	_ = out[:len(segs)]
	var c chunk
	for base := 0; base < len(segs); base += batchChunk {
		part := segs[base:min(base+batchChunk, len(segs))]
		t.prepare(&c, part)
		for i := range part {
			sh := t.shardOf(c.h[i])
			sh.mu.Lock()
			_, e := sh.find(&c.k[i], c.h[i])
			r := LookupResult{}
			if e != nil && !expired(e.deadline, now) {
				r = LookupResult{State: e.state, Found: true}
			}
			sh.mu.Unlock()
			out[base+i] = r
		}
	}
}
