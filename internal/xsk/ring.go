package xsk

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

// Desc is an RX or TX descriptor, laid out as struct xdp_desc.
type Desc struct {
	Addr    uint64
	Len     uint32
	Options uint32
}

// RingOffsets is where a ring's producer, consumer, flags and descriptor
// array live inside its mapping (XDP_MMAP_OFFSETS).
type RingOffsets struct {
	Producer, Consumer, Desc, Flags uint64
}

// Kind names a ring.
type Kind uint8

const (
	KindFill Kind = iota
	KindComp
	KindRx
	KindTx
)

func (k Kind) String() string {
	switch k {
	case KindFill:
		return "fill"
	case KindComp:
		return "comp"
	case KindRx:
		return "rx"
	case KindTx:
		return "tx"
	}
	return fmt.Sprintf("ring(%d)", uint8(k))
}

// IndexError reports a ring index that broke the protocol: the kernel (or a
// stray write) moved an index backwards, beyond the other side, or changed
// ours.
type IndexError struct {
	Ring     Kind
	Producer uint32 // as read (or cached, for our own side)
	Consumer uint32
	Size     uint32
	What     string
}

func (e *IndexError) Error() string {
	return fmt.Sprintf("%s ring index corrupt: %s (producer %d, consumer %d, size %d)",
		e.Ring, e.What, e.Producer, e.Consumer, e.Size)
}

// ring holds what producer and consumer views share. Pointers point into the
// mapping; cached values are ours alone.
type ring struct {
	producer *uint32 // written by the producing side only
	consumer *uint32 // written by the consuming side only
	flags    *uint32 // written by the kernel (NEED_WAKEUP)
	mask     uint32
	size     uint32
	kind     Kind
}

func newRing(kind Kind, mem []byte, off RingOffsets, size, entSize uint32) (ring, unsafe.Pointer, error) {
	if size == 0 || size&(size-1) != 0 {
		return ring{}, nil, fmt.Errorf("%s ring size %d is not a power of two", kind, size)
	}
	need := off.Desc + uint64(size)*uint64(entSize)
	if uint64(len(mem)) < need || off.Producer+4 > off.Desc || off.Consumer+4 > off.Desc || off.Flags+4 > off.Desc {
		return ring{}, nil, fmt.Errorf("%s ring mapping of %d bytes too small for %d entries at offsets %+v", kind, len(mem), size, off)
	}
	base := unsafe.Pointer(unsafe.SliceData(mem))
	// The kernel maps these words at the offsets it returned; they are
	// 4-byte aligned because the mapping is page aligned and the offsets are
	// multiples of 4 (checked by the kernel's own struct layout).
	r := ring{
		producer: (*uint32)(unsafe.Add(base, off.Producer)),
		consumer: (*uint32)(unsafe.Add(base, off.Consumer)),
		flags:    (*uint32)(unsafe.Add(base, off.Flags)),
		mask:     size - 1,
		size:     size,
		kind:     kind,
	}
	return r, unsafe.Add(base, off.Desc), nil
}

// Size is the number of entries.
func (r *ring) Size() uint32 { return r.size }

// Kind says which ring this is.
func (r *ring) Kind() Kind { return r.kind }

// NeedWakeup reports whether the kernel asked to be woken (XDP_RING_NEED_WAKEUP).
// Only meaningful on FILL and TX, read after publishing the producer index.
func (r *ring) NeedWakeup() bool { return atomic.LoadUint32(r.flags)&ringNeedWakeup != 0 }

// Flags returns the raw flags word.
func (r *ring) Flags() uint32 { return atomic.LoadUint32(r.flags) }

// Indices returns the shared producer and consumer indices as the other
// side currently sees them (for metrics and checks).
func (r *ring) Indices() (prod, cons uint32) {
	return atomic.LoadUint32(r.producer), atomic.LoadUint32(r.consumer)
}

const ringNeedWakeup = 1

// prodRing is the user-produced side (FILL, TX).
type prodRing struct {
	ring
	cachedProd uint32 // next slot we will write; published on Submit
	cachedCons uint32 // consumer index as last loaded
}

// Free returns the free slots, reloading the consumer index only when fewer
// than want are known to be free.
func (r *prodRing) Free(want uint32) (uint32, error) {
	free := r.size - (r.cachedProd - r.cachedCons)
	if free >= want {
		return free, nil
	}
	cons := atomic.LoadUint32(r.consumer)
	// The kernel's consumer only moves forward and never passes what we
	// produced: 0 <= cons-old <= prod-old.
	if cons-r.cachedCons > r.cachedProd-r.cachedCons {
		return 0, &IndexError{r.kind, r.cachedProd, cons, r.size, fmt.Sprintf("consumer moved from %d outside [%d, %d]", r.cachedCons, r.cachedCons, r.cachedProd)}
	}
	r.cachedCons = cons
	return r.size - (r.cachedProd - cons), nil
}

// Reserve reserves up to n slots and returns the first index and how many
// were reserved. The caller writes exactly that many slots and calls Submit:
// there is no cancel.
func (r *prodRing) Reserve(n uint32) (idx, got uint32, err error) {
	free, err := r.Free(n)
	if err != nil {
		return 0, 0, err
	}
	got = min(n, free)
	idx = r.cachedProd
	r.cachedProd += got
	return idx, got, nil
}

// Submit publishes every reserved slot with one store-release of the
// producer index.
func (r *prodRing) Submit() {
	atomic.StoreUint32(r.producer, r.cachedProd)
}

// Outstanding is how many submitted entries the kernel has not consumed yet.
func (r *prodRing) Outstanding() uint32 {
	return r.cachedProd - atomic.LoadUint32(r.consumer)
}

// CheckOwn reports an error when our published producer index was changed
// behind our back (a scribble on the mapping).
func (r *prodRing) CheckOwn() error {
	if p := atomic.LoadUint32(r.producer); p != r.cachedProd {
		return &IndexError{r.kind, p, r.cachedCons, r.size, fmt.Sprintf("producer reads %d, we stored %d", p, r.cachedProd)}
	}
	return nil
}

// consRing is the user-consumed side (RX, COMPLETION).
type consRing struct {
	ring
	cachedProd uint32 // producer index as last loaded
	cachedCons uint32 // next slot we will read; published on Release
	released   uint32 // consumer index as last published
	poisonOn   bool
}

// SetPoison makes Release overwrite every consumed slot with Poison before
// publishing it, so a slot the kernel exposes without writing it reads as
// Poison instead of as a plausible old descriptor.
func (r *consRing) SetPoison(on bool) { r.poisonOn = on }

// Poison is written into consumed RX and COMPLETION slots when poisoning is on.
const Poison = 0xdeadbeefdeadbeef

// Available returns how many entries can be peeked, loading the producer
// index only when fewer than want are cached.
func (r *consRing) Available(want uint32) (uint32, error) {
	avail := r.cachedProd - r.cachedCons
	if avail >= want {
		return avail, nil
	}
	prod := atomic.LoadUint32(r.producer)
	// The producer only moves forward and never laps us: what it exposes
	// beyond our published consumer fits the ring.
	if prod-r.released > r.size || prod-r.cachedProd > r.size {
		return 0, &IndexError{r.kind, prod, r.released, r.size, fmt.Sprintf("producer moved from %d to %d", r.cachedProd, prod)}
	}
	r.cachedProd = prod
	return prod - r.cachedCons, nil
}

// Peek claims up to n entries for reading; they stay in the ring (the kernel
// will not overwrite them) until Release.
func (r *consRing) Peek(n uint32) (idx, got uint32, err error) {
	avail, err := r.Available(n)
	if err != nil {
		return 0, 0, err
	}
	got = min(n, avail)
	idx = r.cachedCons
	r.cachedCons += got
	return idx, got, nil
}

// CheckOwn reports an error when our published consumer index was changed
// behind our back.
func (r *consRing) CheckOwn() error {
	if c := atomic.LoadUint32(r.consumer); c != r.released {
		return &IndexError{r.kind, r.cachedProd, c, r.size, fmt.Sprintf("consumer reads %d, we stored %d", c, r.released)}
	}
	return nil
}

// prodSlots is a user-produced ring of T (FILL: uint64, TX: Desc).
type prodSlots[T any] struct {
	prodRing
	slots []T
}

// consSlots is a user-consumed ring of T (COMPLETION: uint64, RX: Desc).
type consSlots[T any] struct {
	consRing
	slots  []T
	poison T // written into released slots when poisoning is on
}

// FillRing is the FILL ring of one (interface, queue): frames user space
// gives the kernel to receive into.
type FillRing struct{ prodSlots[uint64] }

// TxRing is a socket's TX ring.
type TxRing struct{ prodSlots[Desc] }

// CompRing is the COMPLETION ring of one (interface, queue): frames the
// kernel has finished transmitting.
type CompRing struct{ consSlots[uint64] }

// RxRing is a socket's RX ring.
type RxRing struct{ consSlots[Desc] }

// NewFillRing builds a FILL ring view over mem, as mapped at
// XDP_UMEM_PGOFF_FILL_RING or laid out by a kernel model.
func NewFillRing(mem []byte, off RingOffsets, size uint32) (*FillRing, error) {
	r, d, err := newRing(KindFill, mem, off, size, 8)
	if err != nil {
		return nil, err
	}
	return &FillRing{prodSlots[uint64]{prodRing{ring: r}, unsafe.Slice((*uint64)(d), size)}}, nil
}

// NewTxRing builds a TX ring view over mem.
func NewTxRing(mem []byte, off RingOffsets, size uint32) (*TxRing, error) {
	r, d, err := newRing(KindTx, mem, off, size, 16)
	if err != nil {
		return nil, err
	}
	return &TxRing{prodSlots[Desc]{prodRing{ring: r}, unsafe.Slice((*Desc)(d), size)}}, nil
}

// NewCompRing builds a COMPLETION ring view over mem.
func NewCompRing(mem []byte, off RingOffsets, size uint32) (*CompRing, error) {
	r, d, err := newRing(KindComp, mem, off, size, 8)
	if err != nil {
		return nil, err
	}
	return &CompRing{consSlots[uint64]{consRing{ring: r}, unsafe.Slice((*uint64)(d), size), Poison}}, nil
}

// NewRxRing builds an RX ring view over mem.
func NewRxRing(mem []byte, off RingOffsets, size uint32) (*RxRing, error) {
	r, d, err := newRing(KindRx, mem, off, size, 16)
	if err != nil {
		return nil, err
	}
	return &RxRing{consSlots[Desc]{consRing{ring: r}, unsafe.Slice((*Desc)(d), size), Desc{Addr: Poison}}}, nil
}

// Slot returns the slot for ring index idx (reserved or peeked).
func (r *prodSlots[T]) Slot(idx uint32) *T { return &r.slots[idx&r.mask] }

// Slot returns the slot for ring index idx (reserved or peeked).
func (r *consSlots[T]) Slot(idx uint32) *T { return &r.slots[idx&r.mask] }

// Put hands up to len(vals) entries to the kernel (frames to receive into,
// or to transmit) and returns how many it took; the rest stay the caller's.
// On TX the caller still has to kick the socket.
func (r *prodSlots[T]) Put(vals []T) (int, error) {
	idx, n, err := r.Reserve(uint32(len(vals)))
	if err != nil || n == 0 {
		return 0, err
	}
	for i := uint32(0); i < n; i++ {
		r.slots[(idx+i)&r.mask] = vals[i]
	}
	r.Submit()
	return int(n), nil
}

// Get takes up to len(dst) entries (received descriptors, or completed
// addresses); the frames are the caller's from now on.
func (r *consSlots[T]) Get(dst []T) (int, error) {
	idx, n, err := r.Peek(uint32(len(dst)))
	if err != nil || n == 0 {
		return 0, err
	}
	for i := uint32(0); i < n; i++ {
		dst[i] = r.slots[(idx+i)&r.mask]
	}
	r.Release()
	return int(n), nil
}

// Release publishes every peeked entry with one store-release of the
// consumer index, poisoning the slots first when enabled. A slot must not be
// touched after it is released: the kernel may already be rewriting it.
func (r *consSlots[T]) Release() {
	if r.poisonOn {
		for i := r.released; i != r.cachedCons; i++ {
			r.slots[i&r.mask] = r.poison
		}
	}
	r.released = r.cachedCons
	atomic.StoreUint32(r.consumer, r.cachedCons)
}
