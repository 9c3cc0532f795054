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
	poison     bool
}

// SetPoison makes Release overwrite every consumed slot with Poison before
// publishing it, so a slot the kernel exposes without writing it reads as
// Poison instead of as a plausible old descriptor.
func (r *consRing) SetPoison(on bool) { r.poison = on }

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

// FillRing is the FILL ring of one (interface, queue): frames user space
// gives the kernel to receive into.
type FillRing struct {
	prodRing
	slots []uint64
}

// CompRing is the COMPLETION ring of one (interface, queue): frames the
// kernel has finished transmitting.
type CompRing struct {
	consRing
	slots []uint64
}

// RxRing is a socket's RX ring.
type RxRing struct {
	consRing
	slots []Desc
}

// TxRing is a socket's TX ring.
type TxRing struct {
	prodRing
	slots []Desc
}

// NewFillRing builds a FILL ring view over mem, as mapped at
// XDP_UMEM_PGOFF_FILL_RING or laid out by a kernel model.
func NewFillRing(mem []byte, off RingOffsets, size uint32) (*FillRing, error) {
	r, d, err := newRing(KindFill, mem, off, size, 8)
	if err != nil {
		return nil, err
	}
	return &FillRing{prodRing{ring: r}, unsafe.Slice((*uint64)(d), size)}, nil
}

// NewCompRing builds a COMPLETION ring view over mem.
func NewCompRing(mem []byte, off RingOffsets, size uint32) (*CompRing, error) {
	r, d, err := newRing(KindComp, mem, off, size, 8)
	if err != nil {
		return nil, err
	}
	return &CompRing{consRing: consRing{ring: r}, slots: unsafe.Slice((*uint64)(d), size)}, nil
}

// NewRxRing builds an RX ring view over mem.
func NewRxRing(mem []byte, off RingOffsets, size uint32) (*RxRing, error) {
	r, d, err := newRing(KindRx, mem, off, size, 16)
	if err != nil {
		return nil, err
	}
	return &RxRing{consRing: consRing{ring: r}, slots: unsafe.Slice((*Desc)(d), size)}, nil
}

// NewTxRing builds a TX ring view over mem.
func NewTxRing(mem []byte, off RingOffsets, size uint32) (*TxRing, error) {
	r, d, err := newRing(KindTx, mem, off, size, 16)
	if err != nil {
		return nil, err
	}
	return &TxRing{prodRing{ring: r}, unsafe.Slice((*Desc)(d), size)}, nil
}

// Slot returns the slot for ring index idx (reserved or peeked).
func (r *FillRing) Slot(idx uint32) *uint64 { return &r.slots[idx&r.mask] }
func (r *CompRing) Slot(idx uint32) *uint64 { return &r.slots[idx&r.mask] }
func (r *RxRing) Slot(idx uint32) *Desc     { return &r.slots[idx&r.mask] }
func (r *TxRing) Slot(idx uint32) *Desc     { return &r.slots[idx&r.mask] }

// Put hands up to len(addrs) frames to the kernel for receiving and returns
// how many it took; the rest stay the caller's.
func (r *FillRing) Put(addrs []uint64) (int, error) {
	idx, n, err := r.Reserve(uint32(len(addrs)))
	if err != nil || n == 0 {
		return 0, err
	}
	for i := uint32(0); i < n; i++ {
		r.slots[(idx+i)&r.mask] = addrs[i]
	}
	r.Submit()
	return int(n), nil
}

// Put hands up to len(descs) frames to the kernel for transmission and
// returns how many it took. The caller still has to kick the socket.
func (r *TxRing) Put(descs []Desc) (int, error) {
	idx, n, err := r.Reserve(uint32(len(descs)))
	if err != nil || n == 0 {
		return 0, err
	}
	for i := uint32(0); i < n; i++ {
		r.slots[(idx+i)&r.mask] = descs[i]
	}
	r.Submit()
	return int(n), nil
}

// Get takes up to len(dst) received descriptors; the frames are the
// caller's from now on.
func (r *RxRing) Get(dst []Desc) (int, error) {
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

// Get takes up to len(dst) completed frame addresses.
func (r *CompRing) Get(dst []uint64) (int, error) {
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
func (r *RxRing) Release() {
	if r.poison {
		for i := r.released; i != r.cachedCons; i++ {
			r.slots[i&r.mask] = Desc{Addr: Poison, Len: 0, Options: 0}
		}
	}
	r.released = r.cachedCons
	atomic.StoreUint32(r.consumer, r.cachedCons)
}

// Release publishes every peeked entry, poisoning them first when enabled.
func (r *CompRing) Release() {
	if r.poison {
		for i := r.released; i != r.cachedCons; i++ {
			r.slots[i&r.mask] = Poison
		}
	}
	r.released = r.cachedCons
	atomic.StoreUint32(r.consumer, r.cachedCons)
}
