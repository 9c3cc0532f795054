package engine

import "golang.org/x/sys/unix"

// rxWaker ports can wake the kernel's RX (*xsk.Socket, the kernel model):
// recvfrom(fd, NULL, 0, MSG_DONTWAIT).
type rxWaker interface{ WakeRx() unix.Errno }

// wakeFill wakes a zero-copy driver that ran out of FILL buffers: it sets
// XDP_RING_NEED_WAKEUP on FILL and takes no more until woken, so frames
// would wait for the next poll(2). Called after every refill that posted,
// and before the worker sleeps (the driver may have run dry after the last
// post looked at the flag). Only when the kernel has FILL entries to take:
// waking it to find FILL empty changes nothing. In copy mode the flag is
// never set, so this is one atomic load.
func (w *Worker) wakeFill(p *port) {
	if p.waker == nil || !p.fill.NeedWakeup() || p.fill.Outstanding() == 0 {
		return
	}
	p.stats.FillWakeups.Add(1)
	switch e := p.waker.WakeRx(); e {
	case 0, unix.EAGAIN:
	default:
		p.stats.KickErrors.Add(1)
	}
}
