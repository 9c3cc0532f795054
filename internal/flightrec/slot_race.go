//go:build race

package flightrec

import "sync/atomic"

// slot is one event; under the race detector every word is atomic, so the
// detector sees the reader/writer protocol as synchronised (slot.go says why
// plain stores are sound in normal builds).
type slot struct {
	time     atomic.Int64
	addr     atomic.Uint64
	lenBatch atomic.Uint64 // Len<<32 | Batch
	opAux    atomic.Uint64 // Op<<32 | Aux
}

func (s *slot) store(t int64, addr, lenBatch, opAux uint64) {
	s.time.Store(t)
	s.addr.Store(addr)
	s.lenBatch.Store(lenBatch)
	s.opAux.Store(opAux)
}

func (s *slot) load() (t int64, addr, lenBatch, opAux uint64) {
	return s.time.Load(), s.addr.Load(), s.lenBatch.Load(), s.opAux.Load()
}
