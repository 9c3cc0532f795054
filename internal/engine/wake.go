package engine

import "golang.org/x/sys/unix"

// rxWaker ports can wake the kernel's RX (*xsk.Socket, the kernel model):
// recvfrom(fd, NULL, 0, MSG_DONTWAIT).
type rxWaker interface{ WakeRx() unix.Errno }

// wakeFill wakes a zero-copy driver that ran out of FILL buffers: it sets
// XDP_RING_NEED_WAKEUP on FILL and takes no more until woken, so frames
// would wait for the next poll(2). Called after every refill that posted,
// and before the worker sleeps; and once after each post when RX has
// nothing: the driver may have run dry just after the post looked at the
// flag, and with FILL at its target no refill follows while the other
// port's traffic keeps the worker from sleeping (libxdp's xsk wakes
// whenever RX is empty and FILL needs it; once per post is enough: a
// driver that runs dry again without a new post finds FILL empty, and the
// next post wakes it). Only when the kernel has FILL entries to take:
// waking it to find FILL empty changes nothing. In copy mode the flag is
// never set, so this is one atomic load.
func (w *Worker) wakeFill(p *port) {
	if p.waker == nil || !p.fill.NeedWakeup() || p.fill.Outstanding() == 0 {
		return
	}
	p.fillWoken = true
	p.stats.FillWakeups.Add(1)
	switch e := p.waker.WakeRx(); e {
	case 0, unix.EAGAIN:
	default:
		p.stats.KickErrors.Add(1)
	}
}
