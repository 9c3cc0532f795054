//go:build !race

package flightrec

// slot is one event, written by the single writer with plain stores.
//
// Why that is sound here: a reader never trusts a slot on its own. It loads
// the published head (an atomic, written after the slot), copies the slots,
// loads the head again and discards every slot the writer may have begun
// to overwrite in between (see Snapshot). On amd64 (TSO) and arm64 (the
// atomic head store is a store-release) the slot words are visible before
// the head that covers them, and aligned 8-byte words are never torn. What
// the Go memory model calls a race is confined to slots the reader then
// drops. Plain stores cost a MOV each; atomic ones are XCHG on amd64, and
// the recorder runs four times per descriptor on the hot path.
//
// Under -race the atomic variant (slot_race.go) is built instead, so the
// race detector checks everything else.
type slot struct {
	time     int64
	addr     uint64
	lenBatch uint64 // Len<<32 | Batch
	opAux    uint64 // Op<<32 | Aux
}

func (s *slot) store(t int64, addr, lenBatch, opAux uint64) {
	s.time, s.addr, s.lenBatch, s.opAux = t, addr, lenBatch, opAux
}

func (s *slot) load() (t int64, addr, lenBatch, opAux uint64) {
	return s.time, s.addr, s.lenBatch, s.opAux
}
