package protect

import (
	"sync/atomic"
	"time"

	"github.com/xskgate/xskgate/internal/packet"
)

// The retransmit action drops a tuple's first SYN and admits its
// retransmission, so it must remember every first SYN it dropped for as
// long as a retransmission may come: the rule's retransmit window (3 s by
// default). Under a flood that is a lot of SYNs, almost all spoofed and
// never repeated, and a legitimate one among them must still be found.
//
// Sizing: at R first SYNs per second and a window of W seconds, R×W of
// them are live at once. A direct-mapped table overwrites instead: with
// 64K slots at 1 Mpps an entry lived about 65 ms, far less than an RTO,
// so under a flood no client ever got in. This table holds
// DefaultRetransmitCapacity (4M) entries of 8 bytes, 32 MiB, allocated only
// when a rule uses the action: 4M live SYNs are 1.4 Mpps for 3 s, about
// twice what the user-space path of one worker inspects (the XDP first
// line does not run this action), at a load where buckets rarely
// overflow. Options.RetransmitCapacity changes it.
//
// Keying: a slot is chosen by a SipHash of (source, destination, ports,
// ISN) under the Inspector's secret key, so a flood cannot aim at one
// client's bucket, and stores 32 more bits of that hash as a tag with the
// time: a random SYN passes for a recorded one with odds 8×2⁻³², about one
// admitted per 500 million.
//
// Replacement: a bucket is the 8 slots of one cache line. A SYN takes an
// empty slot or one whose entry is older than every rule's window (it can
// no longer match); an entry still in its window is never overwritten, so
// a SYN recorded before a flood is found whatever the flood's size. When
// a bucket is all live entries the new first SYN is not recorded (counted
// as retransmit table_full): that client's retry is taken for a first SYN
// and recorded if there is room by then. Past capacity the action thus
// fails new clients but never those already recorded; the challenge
// action keeps no state and has no such limit.
const (
	// DefaultRetransmitCapacity is the default size of the retransmit
	// action's table, in first SYNs.
	DefaultRetransmitCapacity = 1 << 22
	retransWays               = 8 // slots per bucket: one cache line of uint64
)

// retransTable is the retransmit action's memory of dropped first SYNs:
// each slot holds tag<<32 | time in ms (0: empty). Slots are read and
// claimed with atomics, so workers share it without a lock.
type retransTable struct {
	slots []atomic.Uint64
	mask  uint64 // buckets - 1
}

func newRetransTable(capacity int) *retransTable {
	n := retransWays
	for n < capacity {
		n <<= 1
	}
	return &retransTable{slots: make([]atomic.Uint64, n), mask: uint64(n/retransWays - 1)}
}

// retrans outcomes (counters).
const (
	rtRecorded  = iota // first SYN remembered
	rtMatched          // retransmission admitted
	rtTableFull        // first SYN not remembered: its bucket is all live entries
	numRetrans
)

var retransNames = [numRetrans]string{"recorded", "matched", "table_full"}

// retransmitted reports whether the SYN in p repeats (same tuple and ISN:
// a stack retransmits its SYN unchanged) a first SYN dropped between
// r.rtMin and r.rtMax ago. Otherwise it records the SYN as a first one,
// unless one of its sightings is already in the table and too young for a
// retransmission (then the first sighting is kept).
func (i *Inspector) retransmitted(w *workerState, rs *ruleset, r *rule, now int64) bool {
	t := i.retrans.Load()
	if t == nil {
		return false // no rule had the action when the table was built: nothing recorded yet
	}
	p := w.pkt
	h := i.retransHash(p)
	b := t.slots[(h&t.mask)*retransWays:][:retransWays]
	tag := uint32(h>>32) | 1
	ms := uint32(now / 1e6)
	free := -1
	for k := range b {
		old := b[k].Load()
		age := time.Duration(ms-uint32(old)) * time.Millisecond
		switch {
		case old == 0 || age > rs.rtMaxAll:
			if free < 0 {
				free = k
			}
		case uint32(old>>32) != tag:
		case age >= r.rtMin && age <= r.rtMax:
			if b[k].CompareAndSwap(old, 0) {
				w.c.retrans[rtMatched].inc()
				return true
			}
			return false // another worker took it: that one was the retransmission
		case age < r.rtMin:
			return false // too soon for an RTO: keep the first sighting
		default:
			// Past this rule's window (a longer rule's may still want
			// it): forget it and record this SYN as a first one.
			b[k].CompareAndSwap(old, 0)
			if free < 0 {
				free = k
			}
		}
	}
	entry := uint64(tag)<<32 | uint64(ms)
	for k := free; k >= 0 && k < len(b); k++ {
		old := b[k].Load()
		if old != 0 && time.Duration(ms-uint32(old))*time.Millisecond <= rs.rtMaxAll {
			continue // live: taken since the scan, or never free
		}
		if b[k].CompareAndSwap(old, entry) {
			w.c.retrans[rtRecorded].inc()
			return false
		}
	}
	w.c.retrans[rtTableFull].inc()
	return false
}

// retransHash is the keyed hash of the SYN's tuple and ISN.
func (i *Inspector) retransHash(p *packet.Packet) uint64 {
	var m [5]uint64
	m[0], m[1] = addrWords(p.Src)
	m[2], m[3] = addrWords(p.Dst)
	m[4] = uint64(p.SrcPort)<<48 | uint64(p.DstPort)<<32 | uint64(p.TCP.Seq)
	return i.key.sum(m[:])
}

// needRetrans builds the retransmit table the first time a rule set uses
// the action (at New or Reload, under reloadMu): its memory is spent only
// where the action is configured, and it survives later reloads.
func (i *Inspector) needRetrans(rs *ruleset) {
	if i.retrans.Load() != nil {
		return
	}
	for _, r := range rs.rules {
		if r.action == ActionRetransmit && r.synMode != ModeDisabled {
			i.retrans.Store(newRetransTable(i.retransCap))
			return
		}
	}
}
