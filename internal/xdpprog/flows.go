package xdpprog

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// The first line's flow map: the tracked flows user space mirrors, so that
// the out-of-state stage drops only what no tracked flow explains.

// Flow is a tracked TCP flow as it arrives on the outer interface: Src is
// the Internet side.
type Flow struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
}

func flowKey(fl Flow) steerFlowkey {
	return steerFlowkey{Src: addr16(fl.Src.Unmap()), Dst: addr16(fl.Dst.Unmap()),
		Sport: fl.SrcPort<<8 | fl.SrcPort>>8, Dport: fl.DstPort<<8 | fl.DstPort>>8}
}

// FlowBatch is scratch for AddFlows, reused so that the worker that
// mirrors its new flows allocates nothing per batch.
type FlowBatch struct {
	keys []steerFlowkey
	vals []uint8
}

// Add queues fl.
func (b *FlowBatch) Add(fl Flow) {
	b.keys = append(b.keys, flowKey(fl))
	b.vals = append(b.vals, 1)
}

// Len is the number of queued flows.
func (b *FlowBatch) Len() int { return len(b.keys) }

// addFlowsLocked is AddFlows with the program held open.
func (f *FirstLine) addFlowsLocked(b *FlowBatch) error {
	if len(b.keys) == 0 {
		return nil
	}
	_, err := f.m(steerMapXskgateFlows).BatchUpdate(b.keys, b.vals, nil)
	b.keys, b.vals = b.keys[:0], b.vals[:0]
	if err != nil {
		return fmt.Errorf("first line: add flows: %w", err)
	}
	return nil
}

// sweepFlowsLocked is SweepFlows with the program held open.
func (f *FirstLine) sweepFlowsLocked(live func(Flow) bool) (kept, deleted int, err error) {
	m := f.m(steerMapXskgateFlows)
	var stale []steerFlowkey
	var k steerFlowkey
	var v uint8
	it := m.Iterate()
	for it.Next(&k, &v) {
		if live(flowOf(k)) {
			kept++
		} else {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return kept, 0, fmt.Errorf("first line: sweep flows: %w", err)
	}
	if len(stale) > 0 {
		n, err := m.BatchDelete(stale, nil)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return kept, n, fmt.Errorf("first line: sweep flows: %w", err)
		}
		deleted = n
	}
	return kept, deleted, nil
}

func flowOf(k steerFlowkey) Flow {
	addr := func(a steerAddr16) netip.Addr {
		var b [16]byte
		for i, w := range a.W {
			b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(w), byte(w>>8), byte(w>>16), byte(w>>24)
		}
		return netip.AddrFrom16(b).Unmap()
	}
	return Flow{Src: addr(k.Src), Dst: addr(k.Dst), SrcPort: k.Sport<<8 | k.Sport>>8, DstPort: k.Dport<<8 | k.Dport>>8}
}

// AddFlows puts the queued flows into the flow map in one syscall and
// empties b.
func (f *FirstLine) AddFlows(b *FlowBatch) error {
	return f.use(func() error { return f.addFlowsLocked(b) })
}

// SweepFlows deletes from the flow map every flow for which live returns
// false (expired or closed in user space's table), and returns how many
// remain and how many went.
func (f *FirstLine) SweepFlows(live func(Flow) bool) (kept, deleted int, err error) {
	err = f.use(func() error { kept, deleted, err = f.sweepFlowsLocked(live); return err })
	return kept, deleted, err
}
