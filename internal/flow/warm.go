//go:build !race

package flow

// warm touches, without locks, the index slots of each flow in the chunk
// and then the entry the matching slot points at, so that the locked
// lookups that follow hit the cache. Phase one starts all index misses;
// phase two, once those lines are in, walks each probe sequence (in cache)
// to the slot whose tag matches and starts the entry misses. The loads are
// hints only: a racing writer can at worst make warm touch the wrong line
// (every slot value is a valid slot or 0, entry numbers are bounds-checked,
// the walk is bounded). They are still data races by the letter of the
// memory model, so this file is left out of -race builds, where warm is a
// no-op (warm_race.go).
//
//go:noinline
func warm(t *Table, c *chunk) uint32 {
	var sink uint32
	var home [batchChunk]uint32
	for i := 0; i < c.n; i++ {
		sh := t.shardOf(c.h[i])
		home[i] = sh.home(c.h[i])
		sink += sh.index[home[i]]
	}
	for i := 0; i < c.n; i++ {
		sh := t.shardOf(c.h[i])
		tag := slotTag(c.h[i])
		n := uint32(len(sh.index))
		j := home[i]
		for range 16 {
			s := sh.index[j]
			if s == 0 {
				break
			}
			if s&0xffff0000 == tag {
				if ei := int(s & 0xffff); ei <= len(sh.entries) {
					// An entry spans up to three lines: touch each.
					e := &sh.entries[ei-1]
					sink += uint32(e.addr[0]) + e.td[1].end + uint32(e.state)
				}
				break
			}
			if j++; j == n {
				j = 0
			}
		}
	}
	return sink
}
