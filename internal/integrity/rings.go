package integrity

import (
	"fmt"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/flightrec"
	"github.com/xskgate/xskgate/internal/xsk"
)

// The hand-overs into rings (PostFill, PostTx) and back from COMPLETION,
// the read-back of what the engine wrote to FILL and TX, and the FILL
// order each socket's RX must follow.

func (s *sock) dqLen() uint32 { return s.dqTail - s.dqHead }

func (s *sock) front() (uint32, bool) {
	if s.dqTail == s.dqHead {
		return 0, false
	}
	return s.dq[s.dqHead&s.dqMask], true
}

// depth is ci's distance from the front of the FILL order, -1 if absent.
func (s *sock) depth(ci uint32) int {
	for i := s.dqHead; i != s.dqTail; i++ {
		if s.dq[i&s.dqMask] == ci {
			return int(i - s.dqHead)
		}
	}
	return -1
}

// syncFill reads back the FILL slots the engine wrote since the last look.
// Approved chunks found there join the expected order; approved chunks not
// found were not posted (the ring was short) and are the worker's again.
func (k *Checker) syncFill(s *sock) {
	prod, _ := s.fill.Indices()
	if prod-s.fillSeen > s.fill.Size() {
		// Our own producer index moved beyond a ring's worth: a scribble
		// (the engine's CheckOwn reports it); do not walk garbage.
		s.fillSeen = prod - s.fill.Size()
	}
	for i := s.fillSeen; i != prod; i++ {
		raw := *s.fill.Slot(i)
		ci, _, ok := k.chunk(raw)
		if !ok || !k.mine(ci) {
			// The kernel skips an out-of-UMEM entry silently (§7.2); a
			// foreign one we cannot track. PostFill vetoes both, so this
			// was posted without asking.
			continue
		}
		st := k.own[ci-k.lo]
		want := fillOf(s.side) | stPend
		if st != want {
			k.postedUnchecked(s, xsk.KindFill, raw, st)
		}
		k.own[ci-k.lo] = fillOf(s.side)
		if !s.zc {
			k.push(s, ci)
		}
	}
	s.fillSeen = prod
	for _, ci := range s.fillPend {
		if k.own[ci-k.lo] == fillOf(s.side)|stPend {
			k.own[ci-k.lo] = stFree // still on the free list
		}
	}
	s.fillPend = s.fillPend[:0]
}

func (k *Checker) push(s *sock, ci uint32) {
	if s.dqLen() > s.dqMask {
		// More FILL entries outstanding than twice the ring: the oldest
		// can no longer be in the kernel's hands.
		k.lose(s, 1)
	}
	s.dq[s.dqTail&s.dqMask] = ci
	s.dqTail++
}

// take removes the entry at depth from the FILL order: with the order
// check off, a chunk received out of FILL order just leaves it; the
// entries ahead of it stay (they may come yet).
func (s *sock) take(depth int) {
	for i := s.dqHead + uint32(depth); i != s.dqHead; i-- {
		s.dq[i&s.dqMask] = s.dq[(i-1)&s.dqMask]
	}
	s.dqHead++
}

// lose pops n entries off the FILL order: the kernel consumed them and
// never returned them. Only copy mode with the order check on says so
// (and push, past any doubt).
func (k *Checker) lose(s *sock, n int) {
	for range n {
		ci := s.dq[s.dqHead&s.dqMask]
		s.dqHead++
		k.own[ci-k.lo] = stLost
		s.rec.RecordAt(k.now, OpLost, k.base(ci), 0, uint32(k.batch), 0)
	}
	k.c.lost.Add(uint64(n))
}

// syncTx is syncFill for TX: approved descriptors the ring did not take
// went back to the worker's free list.
func (k *Checker) syncTx(s *sock) {
	prod, _ := s.tx.Indices()
	if prod-s.txSeen > s.tx.Size() {
		s.txSeen = prod - s.tx.Size()
	}
	for i := s.txSeen; i != prod; i++ {
		d := *s.tx.Slot(i)
		ci, _, ok := k.chunk(d.Addr)
		if !ok || !k.mine(ci) {
			continue
		}
		if st := k.own[ci-k.lo]; st != txOf(s.side)|stPend {
			k.postedUnchecked(s, xsk.KindTx, d.Addr, st)
		}
		k.own[ci-k.lo] = txOf(s.side)
	}
	s.txSeen = prod
	for _, ci := range s.txPend {
		if k.own[ci-k.lo] == txOf(s.side)|stPend {
			k.own[ci-k.lo] = stFree // the engine drops what TX had no room for
		}
	}
	s.txPend = s.txPend[:0]
}

// postedUnchecked reports a chunk found in a FILL or TX ring that the
// engine did not submit to the checker, if it was in a ring already.
func (k *Checker) postedUnchecked(s *sock, ring xsk.Kind, addr uint64, st uint8) {
	var cls Class
	switch st & stKind {
	case stTx:
		cls = FillWhileTx
		if ring == xsk.KindTx {
			cls = TxNotOwned
		}
	case stFill, stLost:
		cls = DoubleFill
		if ring == xsk.KindTx {
			cls = TxNotOwned
		}
	default:
		if ring == xsk.KindTx && !sendable(st) && held(st) {
			cls = TxFree
			break
		}
		return // held by the worker: a legal post that skipped the hook
	}
	if !k.on(CheckOwnership) {
		return
	}
	k.violate(s, &Violation{Class: cls, Ring: ring, Addr: addr,
		Detail: "found in the ring without PostFill/PostTx approval; chunk was " + k.stateString(st)}, nil)
}

// PostFill implements engine.Checker.
func (k *Checker) PostFill(side engine.Side, addrs []uint64, out []engine.Disposition) (nbad int) {
	k.begin()
	s := &k.socks[side]
	b := uint32(k.batch)
	for i, a := range addrs {
		s.rec.RecordAt(k.now, flightrec.FillPost, a, 0, b, 0)
		ci, _, ok := k.chunk(a)
		if !ok {
			if k.on(CheckBounds) {
				k.violate(s, &Violation{Class: BadAddr, Ring: xsk.KindFill, Addr: a, Expected: k.c.size, Got: a,
					Detail: "FILL entry beyond the UMEM: the kernel would skip it silently and the frame would be lost"}, nil)
				out[i] = engine.Quarantine
				nbad++
			}
			continue
		}
		if !k.mine(ci) {
			if k.on(CheckOwnership) {
				k.violate(s, &Violation{Class: ForeignFrame, Ring: xsk.KindFill, Addr: a, Detail: k.foreign(ci)}, nil)
				out[i] = engine.Quarantine
				nbad++
			}
			continue
		}
		st := k.own[ci-k.lo]
		if !held(st) && k.on(CheckOwnership) {
			cls := DoubleFill
			if st&stKind == stTx {
				cls = FillWhileTx
			}
			// The bytes in the chunk are the frame it is busy with (on
			// TX, or received): capture those (lastFrame leaves out a
			// chunk in FILL, which the kernel may be writing).
			k.violate(s, &Violation{Class: cls, Ring: xsk.KindFill, Addr: a,
				Detail: "chunk is " + k.stateString(st)}, k.lastFrame(a))
			out[i] = engine.Quarantine
			nbad++
			continue
		}
		k.own[ci-k.lo] = fillOf(side) | stPend
		s.fillPend = append(s.fillPend, ci)
	}
	k.end()
	return nbad
}

func (k *Checker) foreign(ci uint32) string {
	if k.share == 0 {
		return "chunk of another worker"
	}
	return fmt.Sprintf("chunk %d belongs to worker %d (worker %d owns chunks [%d, %d))", ci, ci/k.share, k.worker, k.lo, k.hi)
}

// PostTx implements engine.Checker.
func (k *Checker) PostTx(side engine.Side, descs []xsk.Desc, out []engine.Disposition) (nbad int) {
	k.begin()
	s := &k.socks[side]
	b := uint32(k.batch)
	fs := k.c.fs
	for i, d := range descs {
		s.rec.RecordAt(k.now, flightrec.TxPost, d.Addr, d.Len, b, 0)
		ci, off, ok := k.chunk(d.Addr)
		cls := noClass
		var exp, got uint64
		badMeta := false
		if k.on(CheckBounds) {
			switch {
			case !ok:
				cls, exp, got = BadAddr, k.c.size, d.Addr
			case d.Len == 0 || off+uint64(d.Len) > fs:
				cls, exp, got = BadLen, fs-off, uint64(d.Len)
			case off < k.c.txMeta:
				// The kernel reads TX metadata before every frame of a
				// UMEM that has it, and refuses a frame too close to its
				// chunk's start (xp_aligned_validate_desc).
				cls, exp, got = BadAddr, k.c.txMeta, off
			case d.Options != 0 && (k.c.txMeta == 0 || d.Options != xsk.OptTxMetadata):
				cls, got = BadOptions, uint64(d.Options)
			case d.Options != 0 && !xsk.ReadTxMetadata(k.area[d.Addr-k.c.txMeta:d.Addr]).Valid(d.Len):
				cls, got, badMeta = BadOptions, uint64(d.Options), true
			}
		}
		if cls == noClass && ok && k.on(CheckOwnership) {
			if !k.mine(ci) {
				cls = ForeignFrame
			} else if st := k.own[ci-k.lo]; !sendable(st) {
				cls = TxNotOwned
				if held(st) {
					cls = TxFree
				}
			}
		}
		if cls != noClass {
			v := &Violation{Class: cls, Ring: xsk.KindTx, Addr: d.Addr, Len: d.Len, Expected: exp, Got: got}
			switch cls {
			case ForeignFrame:
				v.Detail = k.foreign(ci)
			case TxNotOwned, TxFree:
				v.Detail = "chunk is " + k.stateString(k.own[ci-k.lo])
			case BadAddr:
				v.Detail = "TX address beyond the UMEM"
				if ok {
					v.Detail = "TX frame leaves no room for the UMEM's TX metadata before it in its chunk"
				}
			case BadLen:
				v.Detail = "TX length zero or crossing the chunk end"
			case BadOptions:
				switch {
				case badMeta:
					v.Detail = "TX metadata the kernel refuses (unknown flags, or a checksum beyond the frame): the descriptor would stay on TX"
				case k.c.txMeta == 0:
					v.Detail = "TX options set on a UMEM without TX metadata"
				default:
					v.Detail = "TX options other than XDP_TX_METADATA on a UMEM with TX metadata"
				}
			}
			k.violate(s, v, k.frameAt(d.Addr, d.Len))
			out[i] = engine.Quarantine
			nbad++
			continue
		}
		if !ok || !k.mine(ci) {
			continue // the check is off: untrackable
		}
		k.own[ci-k.lo] = txOf(side) | stPend
		s.txPend = append(s.txPend, ci)
	}
	k.end()
	return nbad
}

// Completed implements engine.Checker.
func (k *Checker) Completed(side engine.Side, addrs []uint64, out []engine.Disposition) (nbad int) {
	k.begin()
	s := &k.socks[side]
	b := uint32(k.batch)
	for i, a := range addrs {
		slot := s.compSlot
		s.compSlot++
		s.rec.RecordAt(k.now, flightrec.CompRecv, a, 0, b, slot)
		ci, _, ok := k.chunk(a)
		cls := noClass
		var detail string
		switch {
		case a == xsk.Poison && k.on(CheckPoison):
			cls, detail = UnwrittenSlot, "COMPLETION slot still poisoned: published without being written"
		case !ok:
			if k.on(CheckBounds) {
				cls, detail = BadAddr, "completion beyond the UMEM"
			}
		case !k.mine(ci):
			if k.on(CheckOwnership) {
				cls, detail = ForeignFrame, k.foreign(ci)
			}
		default:
			st := k.own[ci-k.lo]
			if st&^stAgeMask == txOf(side) {
				// Also after a tx_overdue report: late, not lost.
				k.own[ci-k.lo] = compOf(side)
				continue
			}
			if k.on(CheckOwnership) {
				cls, detail = CompletionNotSent, "chunk is "+k.stateString(st)
			}
		}
		if cls == noClass {
			continue
		}
		v := &Violation{Class: cls, Ring: xsk.KindComp, Slot: slot, Addr: a, Detail: detail}
		if cls == BadAddr {
			v.Expected, v.Got = k.c.size, a
		}
		k.violate(s, v, k.lastFrame(a))
		out[i] = engine.Quarantine
		nbad++
	}
	k.end()
	return nbad
}

// Spare implements engine.Checker: the worker takes chunks off its free
// list for frames of the Inspector's own (engine.Extra), to go on side's
// TX. Only a chunk the worker holds may be taken.
func (k *Checker) Spare(side engine.Side, addrs []uint64, out []engine.Disposition) (nbad int) {
	k.begin()
	s := &k.socks[side]
	for i, a := range addrs {
		s.rec.RecordAt(k.now, OpSpare, a, 0, uint32(k.batch), 0)
		ci, _, ok := k.chunk(a)
		cls, detail := noClass, ""
		switch {
		case !ok:
			if k.on(CheckBounds) {
				cls, detail = BadAddr, "spare frame beyond the UMEM"
			}
		case !k.mine(ci):
			if k.on(CheckOwnership) {
				cls, detail = ForeignFrame, k.foreign(ci)
			}
		case !held(k.own[ci-k.lo]):
			if k.on(CheckOwnership) {
				cls, detail = TxNotOwned, "taken for an Extra frame while the chunk is "+k.stateString(k.own[ci-k.lo])
			}
		default:
			k.own[ci-k.lo] = stSpare | uint8(side)<<stSideBit
			continue
		}
		if cls == noClass {
			continue
		}
		v := &Violation{Class: cls, Ring: xsk.KindTx, Addr: a, Detail: detail}
		if cls == BadAddr {
			v.Expected, v.Got = k.c.size, a
		}
		k.violate(s, v, nil)
		out[i] = engine.Quarantine
		nbad++
	}
	k.end()
	return nbad
}
