package kmodel

import (
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/xsk"
)

// rig is the forwarding setup of the end-to-end tests: a Source feeds port
// A; the user loop (the test goroutine) keeps A's FILL stocked, forwards
// each RX descriptor unchanged to port B's TX (one shared UMEM, so the same
// address), kicks B, and returns B's completions to A's FILL. B's peer is a
// Sink. The checkers follow every hand-over.
type rigConfig struct {
	chunks    int
	frameSize uint32
	headroom  uint32
	ringSize  uint32
	traffic   Traffic
	faultsA   Faults
	faultsB   Faults
	poison    bool
	seed      uint64 // the user loop's batch sizes
	record    bool   // keep every RX descriptor read, by ring index
}

type rig struct {
	tb      testing.TB
	umem    []byte
	a, b    *Port
	src     *Source
	sink    *Sink
	st      *umemState
	ca, cb  *checker
	free    []uint64
	pending []xsk.Desc
	rxBuf   []xsk.Desc
	compBuf []uint64
	rng     *rand.Rand

	fillA *xsk.FillRing
	rxA   *xsk.RxRing
	txB   *xsk.TxRing
	compB *xsk.CompRing

	v       *violation // first violation seen
	rxSeen  []xsk.Desc // when recording
	dropped int        // descriptors quarantined after a violation
}

func newRig(tb testing.TB, c rigConfig) *rig {
	tb.Helper()
	if c.frameSize == 0 {
		c.frameSize = 2048
	}
	if c.chunks == 0 {
		c.chunks = 1024
	}
	if c.ringSize == 0 {
		c.ringSize = 256
	}
	umem := make([]byte, c.chunks*int(c.frameSize))
	mk := func(name string, f Faults) *Port {
		p, err := NewPort(Config{
			Umem: umem, FrameSize: c.frameSize, Headroom: c.headroom, Ifname: name,
			FillSize: c.ringSize, CompSize: c.ringSize, RxSize: c.ringSize, TxSize: c.ringSize,
			Faults: f,
		})
		if err != nil {
			tb.Fatal(err)
		}
		return p
	}
	r := &rig{
		tb: tb, umem: umem,
		a: mk("a", c.faultsA), b: mk("b", c.faultsB),
		src: NewSource(c.traffic), sink: NewSink(c.traffic),
		st:      newUmemState(uint64(len(umem)), uint64(c.frameSize)),
		rxBuf:   make([]xsk.Desc, 64),
		compBuf: make([]uint64, 64),
		rng:     rand.New(rand.NewPCG(c.seed, 1)),
	}
	r.b.SetPeer(r.sink)
	r.ca, r.cb = newChecker(r.st, umem, r.a), newChecker(r.st, umem, r.b)
	r.fillA, _, r.rxA, _ = r.a.Rings()
	_, r.compB, _, r.txB = r.b.Rings()
	r.rxA.SetPoison(c.poison)
	r.compB.SetPoison(c.poison)
	if c.record {
		r.rxSeen = make([]xsk.Desc, 0, 1024)
	}
	for i := c.chunks - 1; i >= 0; i-- {
		r.free = append(r.free, uint64(i)*uint64(c.frameSize))
	}
	tb.Cleanup(func() { r.a.Close(); r.b.Close() })
	return r
}

func (r *rig) batch(n int) int { return 1 + r.rng.IntN(n) }

// refill puts a random number of free chunks on A's FILL.
func (r *rig) refill() {
	n := min(len(r.free), r.batch(64))
	if n == 0 {
		return
	}
	addrs := r.free[len(r.free)-n:]
	got, err := r.fillA.Put(addrs)
	if err != nil {
		r.tb.Fatal(err)
	}
	for _, a := range addrs[:got] {
		if err := r.ca.onFill(a); err != nil {
			r.tb.Fatal(err)
		}
	}
	// Put took a prefix; keep the rest.
	rest := addrs[got:]
	r.free = append(r.free[:len(r.free)-n], rest...)
}

func (r *rig) drainRx() int {
	n, err := r.rxA.Get(r.rxBuf[:r.batch(len(r.rxBuf))])
	if err != nil {
		r.tb.Fatal(err)
	}
	for _, d := range r.rxBuf[:n] {
		if r.rxSeen != nil {
			r.rxSeen = append(r.rxSeen, d)
		}
		if v := r.ca.onRx(d); v != nil {
			if r.v == nil {
				r.v = v
			}
			r.dropped++ // quarantined: never reused
			continue
		}
		r.pending = append(r.pending, d)
	}
	return n
}

func (r *rig) pushTx() {
	if len(r.pending) > 0 {
		k := min(len(r.pending), r.batch(64))
		got, err := r.txB.Put(r.pending[:k])
		if err != nil {
			r.tb.Fatal(err)
		}
		for _, d := range r.pending[:got] {
			if err := r.cb.onTx(d); err != nil {
				r.tb.Fatal(err)
			}
		}
		r.pending = append(r.pending[:0], r.pending[got:]...)
	}
	for range 64 {
		switch e := r.b.Kick(); e {
		case 0, unix.EBUSY:
			return
		case unix.EAGAIN:
			r.drainComp()
		default:
			r.tb.Fatalf("kick: %v", e)
		}
	}
}

func (r *rig) drainComp() int {
	n, err := r.compB.Get(r.compBuf[:r.batch(len(r.compBuf))])
	if err != nil {
		r.tb.Fatal(err)
	}
	for _, a := range r.compBuf[:n] {
		if v := r.cb.onComp(a); v != nil {
			if r.v == nil {
				r.v = v
			}
			continue
		}
		r.free = append(r.free, a&^(r.st.fs-1))
	}
	return n
}

// step is one synchronous round: everything in a fixed order, so a seed
// replays exactly.
func (r *rig) step(frames int) {
	r.refill()
	r.src.Send(r.a, frames)
	for r.a.Poll() > 0 {
	}
	for r.drainRx() > 0 {
	}
	for len(r.pending) > 0 {
		r.pushTx()
	}
	for r.drainComp() > 0 {
	}
}
