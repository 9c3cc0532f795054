package integrity

import (
	"fmt"

	"github.com/xskgate/xskgate/internal/xsk"
)

// TX entries that never complete. A kernel (or driver) that transmits a
// frame and never writes its completion leaks it: the engine counts it on
// TX forever, and nothing else would notice. Checking that per packet would
// cost a clock read and a store per post; instead a sweep every
// Config.TxAgeLimit/2 ages every TX entry by one in the two spare bits of
// its state byte (any transition rewrites the byte, so a post or a
// completion resets the age for free), and reports an entry the sweep
// finds a third time: it has been on TX for at least two intervals.
//
// An entry ages only while its socket's kernel makes progress: it completed
// other entries since the last sweep, or has taken every entry off the TX
// ring (what is not completed is in its hands). A link that is down, or a
// device that stopped, completes nothing and consumes nothing: its entries
// are late, not lost, and are not reported.

// sweepTx ages the TX entries of sockets whose kernel made progress.
func (k *Checker) sweepTx() {
	k.lastSweep = k.now
	if !k.ready {
		return
	}
	var moved [2]bool
	for i := range k.socks {
		s := &k.socks[i]
		moved[i] = s.compSlot != s.sweepComp || s.tx == nil || s.tx.Outstanding() == 0
		s.sweepComp = s.compSlot
	}
	if !moved[0] && !moved[1] {
		return
	}
	for i, st := range k.own {
		if st&stKind != stTx || st&stPend != 0 || !moved[st&stSideMask>>stSideBit] {
			continue
		}
		age := st & stAgeMask
		if age == stAgeMask {
			continue // reported
		}
		age += stAgeOne
		k.own[i] = st&^stAgeMask | age
		if age == stAgeMask {
			k.overdue(k.lo+uint32(i), st)
		}
	}
}

// overdue reports the TX entry of chunk ci (state st) as never completed.
// The chunk stays on TX: a late completion is accepted, and until then it
// cannot go anywhere else.
func (k *Checker) overdue(ci uint32, st uint8) {
	if !k.on(CheckOwnership) {
		return
	}
	s := &k.socks[st&stSideMask>>stSideBit]
	a := k.base(ci)
	k.violate(s, &Violation{Class: TxOverdue, Ring: xsk.KindTx, Addr: a,
		Detail: fmt.Sprintf("on TX of %s q%d for over %v while the kernel completed other entries or drained the ring: its completion was lost; the frame stays counted on TX",
			s.iface, s.queue, k.c.cfg.TxAgeLimit)}, k.lastFrame(a))
}
