package xsk

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
)

// kside is a minimal kernel side for tests: it produces RX/COMP and consumes
// FILL/TX directly on the shared words, as net/xdp/xsk_queue.h does.
type kside struct{ prod, cons *uint32 }

func (k kside) produce(n uint32) { atomic.AddUint32(k.prod, n) }
func (k kside) consume(n uint32) { atomic.AddUint32(k.cons, n) }

func newTestFill(t testing.TB, size uint32, start uint32) (*FillRing, kside) {
	t.Helper()
	r, err := NewFillRing(RingMemory(size, 8), KernelOffsets, size)
	if err != nil {
		t.Fatal(err)
	}
	// Start near the 32-bit wrap: indices are free running.
	*r.producer, *r.consumer = start, start
	r.cachedProd, r.cachedCons = start, start
	return r, kside{r.producer, r.consumer}
}

func newTestRx(t testing.TB, size uint32, start uint32) (*RxRing, kside) {
	t.Helper()
	r, err := NewRxRing(RingMemory(size, 16), KernelOffsets, size)
	if err != nil {
		t.Fatal(err)
	}
	*r.producer, *r.consumer = start, start
	r.cachedProd, r.cachedCons, r.released = start, start, start
	return r, kside{r.producer, r.consumer}
}

func TestRingSizeMustBePowerOfTwo(t *testing.T) {
	for _, n := range []uint32{0, 3, 6, 1000} {
		if _, err := NewFillRing(RingMemory(1024, 8), KernelOffsets, n); err == nil {
			t.Errorf("size %d accepted", n)
		}
	}
	if _, err := NewRxRing(make([]byte, 100), KernelOffsets, 64); err == nil {
		t.Error("short mapping accepted")
	}
}

// TestProducerFullEmpty walks a FILL ring through full and empty at every
// batch size, across the 32-bit wrap.
func TestProducerFullEmpty(t *testing.T) {
	for _, start := range []uint32{0, 1<<32 - 5, 1<<32 - 64} {
		for _, size := range []uint32{1, 2, 8, 64} {
			for batch := uint32(1); batch <= size+1; batch++ {
				t.Run(fmt.Sprintf("start%d/size%d/batch%d", start, size, batch), func(t *testing.T) {
					r, k := newTestFill(t, size, start)
					addrs := make([]uint64, batch)
					total := uint32(0)
					for total < size {
						for i := range addrs {
							addrs[i] = uint64(total+uint32(i)) * 4096
						}
						n, err := r.Put(addrs)
						if err != nil {
							t.Fatal(err)
						}
						if want := min(batch, size-total); uint32(n) != want {
							t.Fatalf("put %d, want %d", n, want)
						}
						total += uint32(n)
					}
					if n, _ := r.Put(addrs); n != 0 {
						t.Fatalf("full ring took %d more", n)
					}
					if p, c := r.Indices(); p-c != size {
						t.Fatalf("prod-cons = %d, want %d", p-c, size)
					}
					// Kernel reads every slot in order.
					for i := uint32(0); i < size; i++ {
						if got := *r.Slot(start + i); got != uint64(i)*4096 {
							t.Fatalf("slot %d = %d", i, got)
						}
					}
					k.consume(size)
					if free, _ := r.Free(size); free != size {
						t.Fatalf("free after drain = %d", free)
					}
				})
			}
		}
	}
}

func TestConsumerWrapAndPoison(t *testing.T) {
	for _, start := range []uint32{0, 1<<32 - 3} {
		for _, batch := range []int{1, 3, 16, 64} {
			t.Run(fmt.Sprintf("start%d/batch%d", start, batch), func(t *testing.T) {
				const size = 16
				r, k := newTestRx(t, size, start)
				r.SetPoison(true)
				dst := make([]Desc, batch)
				next, seen := uint64(0), uint64(0)
				for round := 0; round < 10; round++ {
					// Kernel fills all free slots, then publishes.
					p, c := r.Indices()
					free := size - (p - c)
					for i := uint32(0); i < free; i++ {
						*r.Slot(p + i) = Desc{Addr: next, Len: 60}
						next++
					}
					k.produce(free)
					for {
						n, err := r.Get(dst)
						if err != nil {
							t.Fatal(err)
						}
						if n == 0 {
							break
						}
						for _, d := range dst[:n] {
							if d.Addr != seen {
								t.Fatalf("got addr %d want %d", d.Addr, seen)
							}
							seen++
						}
					}
				}
				if seen != next {
					t.Fatalf("consumed %d of %d", seen, next)
				}
				for i := range r.slots {
					if r.slots[i].Addr != Poison {
						t.Fatalf("slot %d not poisoned: %+v", i, r.slots[i])
					}
				}
			})
		}
	}
}

func TestIndexCorruptionDetected(t *testing.T) {
	t.Run("producer beyond size", func(t *testing.T) {
		r, k := newTestRx(t, 8, 100)
		k.produce(9)
		var ie *IndexError
		if _, err := r.Get(make([]Desc, 4)); !errors.As(err, &ie) || ie.Ring != KindRx {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("producer backwards", func(t *testing.T) {
		r, k := newTestRx(t, 8, 100)
		k.produce(4)
		if n, err := r.Get(make([]Desc, 2)); n != 2 || err != nil {
			t.Fatal(n, err)
		}
		atomic.StoreUint32(k.prod, 101)
		if _, err := r.Get(make([]Desc, 4)); err == nil {
			t.Fatal("backwards producer accepted")
		}
	})
	t.Run("consumer beyond producer", func(t *testing.T) {
		r, k := newTestFill(t, 8, 1<<32-2)
		if n, err := r.Put(make([]uint64, 8)); n != 8 || err != nil {
			t.Fatal(n, err)
		}
		k.consume(9)
		if _, err := r.Put(make([]uint64, 1)); err == nil {
			t.Fatal("consumer past producer accepted")
		}
	})
	t.Run("own index scribbled", func(t *testing.T) {
		r, _ := newTestFill(t, 8, 0)
		if err := r.CheckOwn(); err != nil {
			t.Fatal(err)
		}
		atomic.StoreUint32(r.producer, 5)
		if err := r.CheckOwn(); err == nil {
			t.Fatal("scribble not seen")
		}
	})
}

// TestConcurrentSPSC runs a real producer and consumer goroutine over one
// ring; under -race this checks the atomics order slot accesses.
func TestConcurrentSPSC(t *testing.T) {
	const size, total = 64, 200000
	fill, _ := newTestFill(t, size, 1<<32-100)
	// The "kernel" consumes FILL with the same protocol, mirrored.
	done := make(chan uint64)
	go func() {
		var sum uint64
		cons := atomic.LoadUint32(fill.consumer)
		for got := 0; got < total; {
			prod := atomic.LoadUint32(fill.producer)
			for ; cons != prod; cons++ {
				sum += fill.slots[cons&fill.mask]
				got++
			}
			atomic.StoreUint32(fill.consumer, cons)
		}
		done <- sum
	}()
	var want uint64
	batch := make([]uint64, 16)
	for sent := 0; sent < total; {
		k := min(len(batch), total-sent)
		for i := 0; i < k; i++ {
			batch[i] = uint64(sent + i)
		}
		n, err := fill.Put(batch[:k])
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			want += uint64(sent + i)
		}
		sent += n
	}
	if got := <-done; got != want {
		t.Fatalf("sum %d, want %d", got, want)
	}
}

func TestRingAllocs(t *testing.T) {
	r, k := newTestRx(t, 64, 0)
	f, kf := newTestFill(t, 64, 0)
	d := make([]Desc, 16)
	a := make([]uint64, 16)
	if n := testing.AllocsPerRun(1000, func() {
		k.produce(16)
		r.Get(d)
		f.Put(a)
		kf.consume(16)
	}); n != 0 {
		t.Fatalf("%v allocs per batch", n)
	}
}

func BenchmarkRing(b *testing.B) {
	for _, batch := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("fill-put/batch%d", batch), func(b *testing.B) {
			f, k := newTestFill(b, 2048, 0)
			addrs := make([]uint64, batch)
			b.ReportAllocs()
			for i := 0; i < b.N; i += batch {
				if n, _ := f.Put(addrs); n != batch {
					b.Fatal("short put")
				}
				k.consume(uint32(batch))
			}
		})
		b.Run(fmt.Sprintf("tx-reserve-submit/batch%d", batch), func(b *testing.B) {
			r, err := NewTxRing(RingMemory(2048, 16), KernelOffsets, 2048)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for i := 0; i < b.N; i += batch {
				idx, n, _ := r.Reserve(uint32(batch))
				for j := uint32(0); j < n; j++ {
					*r.Slot(idx + j) = Desc{Addr: uint64(j) << 12, Len: 64}
				}
				r.Submit()
				atomic.AddUint32(r.consumer, n)
			}
		})
		b.Run(fmt.Sprintf("rx-peek-release/batch%d", batch), func(b *testing.B) {
			r, k := newTestRx(b, 2048, 0)
			r.SetPoison(true)
			var sink uint64
			b.ReportAllocs()
			for i := 0; i < b.N; i += batch {
				k.produce(uint32(batch))
				idx, n, _ := r.Peek(uint32(batch))
				for j := uint32(0); j < n; j++ {
					sink += r.Slot(idx + j).Addr
				}
				r.Release()
			}
			_ = sink
		})
	}
}
