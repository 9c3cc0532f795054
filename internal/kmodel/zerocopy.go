package kmodel

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// A zero-copy driver (Config.ZeroCopy), as i40e, ice or mlx5 run AF_XDP:
//
//   - It takes buffers from FILL ahead of the frames into its hardware RX
//     ring (DriverRing entries): at the start and the end of every poll,
//     and when the ring runs empty during one (xsk_buff_alloc_batch).
//   - The pool's free list comes first: buffers of frames the XDP program
//     dropped (XDPDrop) and of frames the RX ring had no room for
//     (rx_ring_full; xsk_buff_free) go back into the driver ring behind
//     the buffers already there, before any new FILL entry. So RX follows
//     FILL order only until the first recycle.
//   - A frame lands where its buffer is (no copy), at Headroom + 256; the
//     XDP program's record is written in place around it (descAddr,
//     write).
//   - With no buffer left (FILL empty, nothing recycled), the driver sets
//     XDP_RING_NEED_WAKEUP on FILL and stops: frames wait in the input
//     queue (which drops when full, as a NIC does without descriptors) and
//     Deliver does not schedule a poll, until WakeRx (ndo_xsk_wakeup). A
//     poll that finds buffers again clears the flag.
//
// TX stays copy mode's sendto in the model (Kick), and the TX ring keeps
// NEED_WAKEUP set.

// drvRing is the driver's hardware RX ring: raw FILL entries, FIFO.
type drvRing struct {
	bufs    []uint64
	head, n int
}

func (r *drvRing) push(raw uint64) {
	r.bufs[(r.head+r.n)%len(r.bufs)] = raw
	r.n++
}

func (r *drvRing) pop() (uint64, bool) {
	if r.n == 0 {
		return 0, false
	}
	raw := r.bufs[r.head]
	r.head = (r.head + 1) % len(r.bufs)
	r.n--
	return raw, true
}

// drvRefill tops the driver ring up: recycled buffers first, most recently
// freed first (xp_alloc_reused: the free list is LIFO), then FILL in order
// (xp_alloc_new_from_fq, invalid entries skipped). An empty FILL counts in
// rx_fill_ring_empty_descs once per refill that wanted buffers.
func (p *Port) drvRefill() {
	r := &p.drv
	for r.n < len(r.bufs) && len(p.held) > 0 {
		k := len(p.held) - 1
		r.push(p.held[k])
		p.held = p.held[:k]
	}
	for r.n < len(r.bufs) {
		raw, ok := p.fillEntry()
		if !ok {
			p.stats.fillEmpty.Add(1)
			return
		}
		r.push(raw)
	}
}

// drvReady reports whether the driver has a buffer for the next frame,
// refilling its ring when it is empty.
func (p *Port) drvReady() bool {
	if p.drv.n == 0 {
		p.drvRefill()
	}
	return p.drv.n > 0
}

// drvPop takes the driver ring's next buffer.
func (p *Port) drvPop() (uint64, bool) {
	if !p.drvReady() {
		return 0, false
	}
	return p.drv.pop()
}

// drvEndPoll ends a zero-copy poll, after its refill and the FILL consumer
// were published: with no buffer left, set NEED_WAKEUP on FILL and starve;
// else clear it, and if the poll stopped for want of buffers that it has
// now, poll again.
func (p *Port) drvEndPoll(stopped bool) {
	if p.drv.n == 0 {
		if !p.starved.Swap(true) {
			p.counters.starved.Add(1)
		}
		atomic.StoreUint32(p.fill.flags, ringNeedWakeup)
		return
	}
	atomic.StoreUint32(p.fill.flags, 0)
	p.starved.Store(false)
	if stopped {
		p.schedule()
	}
}

// schedule is napi_schedule: wake the softirq goroutine; a pending wake-up
// is enough.
func (p *Port) schedule() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// xdpDrop draws whether the modelled XDP program drops the next frame
// (Config.XDPDrop), counting it.
func (p *Port) xdpDrop() bool {
	if p.xdpRng == nil || p.xdpRng.Float64() >= p.cfg.XDPDrop {
		return false
	}
	p.counters.xdpDrops.Add(1)
	p.counters.rxFrames.Add(1)
	return true
}

// WakeRx models recvfrom(fd, NULL, 0, MSG_DONTWAIT) on the socket: on a
// zero-copy driver it schedules a poll (ndo_xsk_wakeup), which refills from
// FILL; in copy mode it does nothing (RX needs no syscall). It returns 0,
// or ENETDOWN once the port is closed. Safe from any goroutine.
func (p *Port) WakeRx() unix.Errno {
	if p.closed.Load() {
		return unix.ENETDOWN
	}
	p.counters.wakeups.Add(1)
	if p.cfg.ZeroCopy {
		p.starved.Store(false)
		p.schedule()
	}
	return 0
}
