//go:build !amd64

package flightrec

import "sync/atomic"

// slot is one event. Outside amd64 every word is atomic: the plain-store
// argument of slot_amd64.go needs TSO (on arm64 the reader's slot loads
// could be performed after its second head load, and a torn slot would
// then pass the check). Builds with and without -race run this same code.
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
