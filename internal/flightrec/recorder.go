package flightrec

import (
	"math/bits"
	"sync/atomic"
)

// Event is one recorded descriptor event. It is 32 bytes.
type Event struct {
	Time  int64  // CLOCK_MONOTONIC nanoseconds (see Now)
	Addr  uint64 // UMEM address as it appeared in the descriptor
	Len   uint32 // descriptor length (0 where the ring carries none)
	Batch uint32 // the worker loop's batch number
	Op    Op
	Aux   uint32 // op-specific: violation class, ring slot index, errno, ...
}

const (
	// DefaultSize is the ring size used when NewRecorder is given size <= 0.
	DefaultSize = 4096
	// MaxSize caps the ring size (32 MiB of events per recorder).
	MaxSize = 1 << 20

	// DefaultChunkSize is the UMEM chunk size assumed by dumps until
	// SetChunkSize is called (XSK_UMEM__DEFAULT_FRAME_SIZE).
	DefaultChunkSize = 4096

	// unalignedShift is XSK_UNALIGNED_BUF_OFFSET_SHIFT: in unaligned chunk
	// mode a descriptor address carries an offset in its top 16 bits.
	unalignedShift = 48
	unalignedMask  = 1<<unalignedShift - 1
)

// slot is one ring entry. Every word is atomic because a reader may copy the
// slot while the writer overwrites it; the head check in Snapshot discards
// such copies, but they must still not be data races.

// Recorder is the flight recorder of one AF_XDP socket. Create it with
// [NewRecorder]. A nil *Recorder is valid and records nothing, so callers can
// disable recording without branching at every call site.
type Recorder struct {
	iface string
	queue int
	size  uint64 // events retained, a power of two
	// slots has size+1 entries: the spare one is the slot the writer may be
	// overwriting while the other size are intact, so a reader racing an
	// active writer, or finding it idle, still gets all size events.
	slots []slot

	// next is the index of the next event and nextSlot its slot
	// (next % len(slots), kept incrementally to avoid a division); only the
	// writer touches them.
	next     uint64
	nextSlot int
	// head publishes next to readers after the slot is written.
	head atomic.Uint64

	thread atomic.Uint64 // uint32(cpu)<<32 | uint32(tid)
	chunk  atomic.Uint64 // chunk size | 1<<63 if unaligned mode
}

// NewRecorder returns a recorder for queue of iface holding the last size
// events; size is rounded up to a power of two, DefaultSize if size <= 0 and
// at most MaxSize. CPU and thread id are unknown (-1) until SetThread.
func NewRecorder(iface string, queue int, size int) *Recorder {
	if size <= 0 {
		size = DefaultSize
	}
	size = min(size, MaxSize)
	n := 1 << bits.Len(uint(size-1))
	r := &Recorder{
		iface: iface,
		queue: queue,
		size:  uint64(n),
		slots: make([]slot, n+1),
	}
	r.SetThread(-1, -1)
	r.chunk.Store(DefaultChunkSize)
	return r
}

// Iface returns the interface name given to NewRecorder.
func (r *Recorder) Iface() string { return r.iface }

// Queue returns the queue index given to NewRecorder.
func (r *Recorder) Queue() int { return r.queue }

// Size returns the ring size (a power of two).
func (r *Recorder) Size() int { return int(r.size) }

// Recorded returns the number of events recorded since creation, including
// those since overwritten.
func (r *Recorder) Recorded() uint64 { return r.head.Load() }

// SetThread records which CPU and OS thread (gettid) the writer runs on, so
// dumps can be matched against ftrace's per-CPU, per-pid view. The worker
// calls it after runtime.LockOSThread and again if it migrates.
func (r *Recorder) SetThread(cpu, tid int) {
	r.thread.Store(uint64(uint32(int32(cpu)))<<32 | uint64(uint32(int32(tid))))
}

// Thread returns the values last given to SetThread (-1 if unknown).
func (r *Recorder) Thread() (cpu, tid int) {
	v := r.thread.Load()
	return int(int32(uint32(v >> 32))), int(int32(uint32(v)))
}

// SetChunkSize tells dumps how to split addresses into chunk base and offset:
// size is the UMEM chunk (frame) size; unaligned reports
// XDP_UMEM_UNALIGNED_CHUNK_FLAG, in which the top 16 bits of an address are
// an offset to add to the low 48. It only affects formatting.
func (r *Recorder) SetChunkSize(size uint32, unaligned bool) {
	v := uint64(size)
	if unaligned {
		v |= 1 << 63
	}
	r.chunk.Store(v)
}

func (r *Recorder) chunkSize() (size uint64, unaligned bool) {
	v := r.chunk.Load()
	return v &^ (1 << 63), v&(1<<63) != 0
}

// Record appends an event stamped with Now(). It must only be called by the
// recorder's single writer. It does not allocate.
func (r *Recorder) Record(op Op, addr uint64, length uint32, batch uint32, aux uint32) {
	if r == nil {
		return
	}
	r.RecordAt(Now(), op, addr, length, batch, aux)
}

// RecordAt is Record with a caller-supplied time, so a worker can read the
// clock once per batch: t must come from Now() and must not be earlier than
// the time of the previous event.
func (r *Recorder) RecordAt(t int64, op Op, addr uint64, length uint32, batch uint32, aux uint32) {
	if r == nil {
		return
	}
	n := r.next
	s := &r.slots[r.nextSlot]
	s.store(t, addr, uint64(length)<<32|uint64(batch), uint64(op)<<32|uint64(aux))
	r.next = n + 1
	if r.nextSlot++; r.nextSlot == len(r.slots) {
		r.nextSlot = 0
	}
	// Publishing after the slot is written is what lets Snapshot bound which
	// slots the writer can have touched (see Snapshot).
	r.head.Store(n + 1)
}

// Snapshot appends the recorder's retained events to dst, oldest first, and
// returns the extended slice. It may run concurrently with the writer: events
// the writer may have been overwriting during the copy are left out, so every
// returned event is exactly as recorded.
func (r *Recorder) Snapshot(dst []Event) []Event {
	if r == nil {
		return dst
	}
	nslots := uint64(len(r.slots))
	h1 := r.head.Load()
	first := h1 - min(h1, r.size)
	start := len(dst)
	j := int(first % nslots)
	for i := first; i < h1; i++ {
		s := &r.slots[j]
		if j++; j == len(r.slots) {
			j = 0
		}
		t, a, lb, oa := s.load()
		dst = append(dst, Event{
			Time:  t,
			Addr:  a,
			Len:   uint32(lb >> 32),
			Batch: uint32(lb),
			Op:    Op(oa >> 32),
			Aux:   uint32(oa),
		})
	}
	// The writer stores head = k before it starts writing event k, whose
	// slot held event k-nslots = k-size-1. So once we see head == h2, no
	// event with index >= h2-size can have been touched during the copy;
	// any older one may have been (or may be half-way through being)
	// overwritten.
	h2 := r.head.Load()
	if h2 > r.size {
		if cut := h2 - r.size; cut > first {
			drop := int(min(cut-first, h1-first))
			n := copy(dst[start:], dst[start+drop:])
			dst = dst[:start+n]
		}
	}
	return dst
}
