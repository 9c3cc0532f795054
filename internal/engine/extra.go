package engine

import "github.com/xskgate/xskgate/internal/xsk"

// Extra lets an Inspector send a frame of its own besides its verdicts on
// the received ones: a SYN proxy that completes the server's handshake
// with the received SYN-ACK's frame still owes the client a window update,
// and that needs a second frame.
//
// The frame comes from the worker's free list and goes on a TX ring like
// any bounced or forwarded frame, so the integrity checks, the accounting
// (the frame is free until Send, then on TX) and COMPLETION treat it as
// one; nothing is allocated. A worker offers its Extra only while it can
// spare a frame: more than one batch left free for FILL, and room on the
// TX queue (see spare.Frame). Refusals are counted per port
// (PortStats.ExtraRefused); the Inspector must cope (the proxy's client
// then opens its window with a zero-window probe instead).
type Extra interface {
	// Frame returns a spare frame to build a frame in, to leave by the
	// to interface: len 0, cap up to the end of its UMEM chunk. nil: none
	// can be spared now. The frame stays the worker's until Send, so
	// calling Frame again without Send returns the same frame.
	Frame(to Side) []byte
	// Send queues the first n bytes of the frame the last Frame returned
	// for transmission. It reports false (and sends nothing) when there
	// is no such frame or n does not fit it.
	Send(n int) bool
}

// ExtraUser is implemented by an Inspector that sends frames of its own.
// New hands it each worker's Extra once, before Start: the Inspector may
// use worker w's Extra only inside Inspect(w, ...), i.e. on that worker's
// goroutine, which is what makes it lock-free.
type ExtraUser interface {
	UseExtra(worker int, x Extra)
}

// spare is a worker's Extra. It peeks at the top of the free list in Frame
// and pops it in Send, so a frame the Inspector took but did not send was
// never taken: there is nothing to give back after Inspect.
type spare struct {
	w     *Worker
	to    *port
	chunk uint64 // the frame Frame returned: its chunk base, as on the free list
	addr  uint64 // and its address: chunk base + RX offset
	buf   []byte
	// for the Checker's Spare hook, without allocating
	base [1]uint64
	disp [1]Disposition
}

var _ Extra = (*spare)(nil)

// offerExtra gives the Inspector the worker's Extra, if it wants one.
func (w *Worker) offerExtra() {
	if u, ok := w.insp.(ExtraUser); ok {
		w.extra = spare{w: w}
		u.UseExtra(w.id, &w.extra)
	}
}

// Frame implements Extra. A frame is spared only while more than a FILL
// batch stays free, so extra frames never starve the rings, and while the
// to port's TX queue has used less than half its room: the rest is for the
// verdicts of the batch being inspected and of the other port's (each at
// most a batch), so the queue never grows.
func (x *spare) Frame(to Side) []byte {
	w := x.w
	p := &w.ports[to&1]
	if len(w.free) <= w.batch || len(p.txq) >= cap(p.txq)/2 {
		p.stats.ExtraRefused.Add(1)
		x.buf = nil
		return nil
	}
	u := w.e.umem
	base := w.free[len(w.free)-1]
	x.to, x.chunk, x.addr = p, base, base+u.RxOffset()
	x.buf = u.Area[x.addr : x.addr : base+uint64(u.FrameSize())]
	return x.buf
}

// Send implements Extra.
func (x *spare) Send(n int) bool {
	if x.buf == nil || n <= 0 || n > cap(x.buf) {
		return false
	}
	w := x.w
	w.free = w.free[:len(w.free)-1]
	if w.check != nil {
		// The checker learns the frame is sent as the Inspector's own:
		// only such a frame may go on TX from the free list.
		// The base is the free list's, not one masked out of the
		// address: unaligned chunks need not be a power of two apart.
		x.base[0], x.disp[0] = x.chunk, Keep
		if w.check.Spare(x.to.side, x.base[:], x.disp[:]) > 0 {
			w.quar++
			x.to.stats.Drops[DropViolation].Add(1)
			x.buf = nil
			return false
		}
	}
	x.to.txq = append(x.to.txq, xsk.Desc{Addr: x.addr, Len: uint32(n)})
	x.to.stats.ExtraSent.Add(1)
	x.buf = nil
	return true
}
