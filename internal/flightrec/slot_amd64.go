package flightrec

// slot is one event. On amd64 the single writer stores its words with plain
// MOVs and readers load them with plain MOVs, both in assembly
// (slot_amd64.s).
//
// Why that is sound: a reader never trusts a slot on its own. It loads the
// published head (an atomic, stored after the slot), copies the slots,
// loads the head again and discards every slot the writer may have begun to
// overwrite in between (see Snapshot). amd64 is TSO: stores become visible
// in program order, so the slot words are visible before the head that
// covers them, and loads are not reordered with older loads, so the second
// head load is ordered after the slot copies. Aligned 8-byte words are never
// torn. The compiler cannot move memory accesses across the assembly calls
// or the atomics. A slot the writer overwrites during a copy may be read
// half old, half new, but it is then dropped.
//
// The accesses are in assembly so that the race detector, which does not
// instrument assembly, sees only the atomic head: -race builds run exactly
// this code, and still check everything around it (two writers would race
// on the writer's own index). Other architectures use atomics
// (slot_other.go): the argument above needs TSO (arm64, for one, may
// perform the slot loads after the second head load).
//
// Plain stores cost a MOV each; atomic ones are an XCHG each on amd64, and
// the recorder runs up to four times per descriptor on the hot path.
type slot struct {
	time     int64
	addr     uint64
	lenBatch uint64 // Len<<32 | Batch
	opAux    uint64 // Op<<32 | Aux
}

//go:noescape
func storeSlot(s *slot, t int64, addr, lenBatch, opAux uint64)

//go:noescape
func loadSlot(s *slot) (t int64, addr, lenBatch, opAux uint64)

func (s *slot) store(t int64, addr, lenBatch, opAux uint64) { storeSlot(s, t, addr, lenBatch, opAux) }

func (s *slot) load() (t int64, addr, lenBatch, opAux uint64) { return loadSlot(s) }
