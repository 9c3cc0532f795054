package xdpprog

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// The fast path: established flows that user space offloads cross the gate
// in the kernel. Each interface's XDP program looks a segment's flow up in
// the fast path's map and, on a hit, returns XDP_PASS instead of handing
// the frame to AF_XDP (SYN, FIN and RST always go to user space, whose
// tracker must see a connection open and close); a tc program on each
// interface's ingress (tcx) then redirects the skb to the other
// interface. Why tc: see bpf/fastpath.c (an XDP redirect loses a
// neighbour's partial checksum). Offloaded frames never enter the UMEM,
// so the ring checks have nothing to check on them; the first line (outer)
// still runs first.

// DefaultFastFlows is the fast path's default capacity.
const DefaultFastFlows = 1 << 16

// FastPath is the fast path's map and tc program. The XDP programs of both
// interfaces share its map (Options.Fast).
type FastPath struct {
	mu    sync.RWMutex // guards coll and links against Close
	coll  *ebpf.Collection
	flows *ebpf.Map
	stats *ebpf.Map
	prog  *ebpf.Program
	links []link.Link
	size  int
}

// LoadFastPath loads the fast path for the interfaces outer and inner
// (ifindexes in the caller's network namespace), with room for flows
// offloaded flows (0: DefaultFastFlows).
func LoadFastPath(outer, inner, flows int) (*FastPath, error) {
	if flows == 0 {
		flows = DefaultFastFlows
	}
	if flows < 1 || flows > 1<<24 {
		return nil, fmt.Errorf("fast path: capacity %d out of range [1, %d]", flows, 1<<24)
	}
	memlockOnce.Do(removeMemlock)
	spec, err := loadFast()
	if err != nil {
		return nil, fmt.Errorf("fast path: %w", err)
	}
	spec.Maps[fastMapXskgateFast].MaxEntries = uint32(flows)
	if err := spec.Variables[fastVarOuterIfindex].Set(uint32(outer)); err != nil {
		return nil, err
	}
	if err := spec.Variables[fastVarInnerIfindex].Set(uint32(inner)); err != nil {
		return nil, err
	}
	coll, err := loadCollection(spec, nil)
	if err != nil {
		return nil, fmt.Errorf("fast path: load: %w", loadError(err))
	}
	return &FastPath{coll: coll, flows: coll.Maps[fastMapXskgateFast], stats: coll.Maps[fastMapXskgateFastStats],
		prog: coll.Programs[fastProgXskgateFastTc], size: flows}, nil
}

// Capacity is the number of flows the fast path can hold.
func (f *FastPath) Capacity() int { return f.size }

// Attach attaches the tc program to the ingress of both interfaces
// (tcx, Linux 6.6+), in the caller's network namespace. Attach it before
// the XDP programs get the map, detach it after them (Close).
func (f *FastPath) Attach(ifindexes ...int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.coll == nil {
		return errors.New("fast path: attach: closed")
	}
	for _, idx := range ifindexes {
		l, err := link.AttachTCX(link.TCXOptions{Interface: idx, Program: f.prog, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			if errors.Is(err, ebpf.ErrNotSupported) {
				err = fmt.Errorf("%w (tcx needs Linux 6.6 or later)", err)
			}
			return fmt.Errorf("fast path: attach the tc program to ifindex %d: %w", idx, err)
		}
		f.links = append(f.links, l)
	}
	return nil
}

// FastBatch is scratch for Offload and Release, reused so that a worker
// grows no slice per batch (cilium/ebpf's batch calls still box their
// slice arguments: TestInspectAllocsFastPath in protect counts that).
type FastBatch struct {
	flows []Flow // to offload
	add   []steerFlowkey
	vals  []fastFastval
	del   []steerFlowkey
}

// Offload queues fl for the fast path. delta is its SYN-proxy sequence
// offset (server ISN minus cookie ISN; 0 for a flow the proxy did not
// open), which the fast path applies as user space would: toward the
// server the ACK and SACK edges gain it, toward the client the sequence
// number loses it.
func (b *FastBatch) Offload(fl Flow, delta uint32) {
	b.flows = append(b.flows, fl)
	b.add = append(b.add, flowKey(fl))
	b.vals = append(b.vals, fastFastval{Delta: delta})
}

// Release queues fl's removal from the fast path.
func (b *FastBatch) Release(fl Flow) { b.del = append(b.del, flowKey(fl)) }

// Len is the number of queued changes.
func (b *FastBatch) Len() int { return len(b.add) + len(b.del) }

// Releases is the number of queued releases.
func (b *FastBatch) Releases() int { return len(b.del) }

// Flush applies b's changes, releases first, and empties b. added is how
// many flows were offloaded; notAdded is called for each of the others
// (the map is full, or err), which stay with user space. keep is called
// for each flow added: one for which it returns false (user space took it
// back while the addition was queued) is deleted again.
func (f *FastPath) Flush(b *FastBatch, notAdded func(Flow), keep func(Flow) bool) (added int, err error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	defer func() {
		for _, fl := range b.flows[added:] {
			notAdded(fl)
		}
		b.flows, b.add, b.vals, b.del = b.flows[:0], b.add[:0], b.vals[:0], b.del[:0]
	}()
	if f.coll == nil {
		return 0, errFastClosed
	}
	if err := deleteAll(f.flows, b.del); err != nil {
		return 0, err
	}
	if len(b.add) == 0 {
		return 0, nil
	}
	now := uint64(Now())
	for k := range b.vals {
		b.vals[k].Seen = now
	}
	added, err = f.flows.BatchUpdate(b.add, b.vals, nil)
	added = max(0, min(added, len(b.add)))
	if err != nil && !errors.Is(err, unix.E2BIG) {
		// E2BIG: the map is full, an expected condition (counted by the
		// caller), not an error.
		err = fmt.Errorf("fast path: offload flows: %w", err)
	} else {
		err = nil
	}
	// Taken back while queued: delete again (b.del is spent, reuse it).
	b.del = b.del[:0]
	for k, fl := range b.flows[:added] {
		if !keep(fl) {
			b.del = append(b.del, b.add[k])
		}
	}
	if derr := deleteAll(f.flows, b.del); derr != nil && err == nil {
		err = derr
	}
	return added, err
}

// deleteAll deletes keys from m, skipping those not in it.
func deleteAll(m *ebpf.Map, keys []steerFlowkey) error {
	for len(keys) > 0 {
		n, err := m.BatchDelete(keys, nil)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("fast path: release flows: %w", err)
		}
		keys = keys[min(n+1, len(keys)):]
	}
	return nil
}

// Sweep calls keep for every offloaded flow with the time (Now's clock)
// the fast path last carried a segment of it, and removes the flows for
// which keep returns false. It returns how many flows it kept.
func (f *FastPath) Sweep(keep func(fl Flow, seen int64) bool) (kept int, err error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	keys, vals, err := f.entries()
	if err != nil {
		return 0, err
	}
	var stale []steerFlowkey
	for i, k := range keys {
		if keep(flowOf(k), int64(vals[i].Seen)) {
			kept++
		} else {
			stale = append(stale, k)
		}
	}
	return kept, deleteAll(f.flows, stale)
}

// entries reads every flow in the map, with f.mu held.
func (f *FastPath) entries() (keys []steerFlowkey, vals []fastFastval, err error) {
	if f.coll == nil {
		return nil, nil, errFastClosed
	}
	var k steerFlowkey
	var v fastFastval
	it := f.flows.Iterate()
	for it.Next(&k, &v) {
		keys, vals = append(keys, k), append(vals, v)
	}
	if err := it.Err(); err != nil {
		return nil, nil, fmt.Errorf("fast path: read the flows: %w", err)
	}
	return keys, vals, nil
}

var errFastClosed = errors.New("fast path: closed")

// Drain marks every offloaded flow as being taken back, then calls each
// for it: XDP stops passing the flow's segments to the fast path, which
// still carries those XDP passed before, and the next Sweep whose keep
// returns false for it deletes it. Deleting at once (Sweep) would drop the
// segments in flight between XDP and tc; a flow offloaded again before
// that sweep is simply carried again. It returns how many flows it marked.
// each runs after the mark, so a flow it hands back to user space cannot
// be offloaded again before the mark and then lose it; it runs for every
// flow, also when err reports that some were deleted instead of marked.
func (f *FastPath) Drain(each func(Flow)) (n int, err error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	keys, vals, err := f.entries()
	if err != nil {
		return 0, err
	}
	for i := range vals {
		vals[i].Flags |= fvDraining
	}
	// A flow a FIN released meanwhile comes back, draining: XDP does not
	// pass its segments, and the next sweep deletes it. (Batch updates
	// take no BPF_EXIST.) Flows the update missed are deleted instead, as
	// before draining existed: every flow is taken back either way.
	if len(keys) > 0 {
		m, uerr := f.flows.BatchUpdate(keys, vals, nil)
		if uerr != nil {
			err = fmt.Errorf("fast path: drain: %w", uerr)
			if derr := deleteAll(f.flows, keys[min(max(m, 0), len(keys)):]); derr != nil {
				err = errors.Join(err, derr)
			}
		}
	}
	for _, k := range keys {
		each(flowOf(k))
	}
	return len(keys), err
}

// fvDraining is FV_DRAINING (bpf/fastpath.h).
const fvDraining = 1

// FastCounters are the fast path's counts, summed over CPUs.
type FastCounters struct {
	InPackets, InBytes   uint64 // outer -> inner
	OutPackets, OutBytes uint64 // inner -> outer
	// Lost counts TCP segments XDP passed to the fast path whose flow left
	// its map before the tc program saw them: dropped (the sender
	// retransmits them, through user space).
	Lost uint64
	// TranslateErrors counts segments of SYN-proxied flows the tc program
	// could not rewrite: dropped rather than sent untranslated.
	TranslateErrors uint64
}

// Counters reads the fast path's counters.
func (f *FastPath) Counters() (FastCounters, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var c FastCounters
	if f.coll == nil {
		return c, errFastClosed
	}
	for i, dst := range [][2]*uint64{{&c.InPackets, &c.InBytes}, {&c.OutPackets, &c.OutBytes}, {&c.Lost, nil}, {&c.TranslateErrors, nil}} {
		var per []fastCounters
		if err := f.stats.Lookup(uint32(i), &per); err != nil {
			return FastCounters{}, fmt.Errorf("fast path: read counters: %w", err)
		}
		for _, v := range per {
			*dst[0] += v.Pkts
			if dst[1] != nil {
				*dst[1] += v.Bytes
			}
		}
	}
	return c, nil
}

// Close detaches the tc program and releases the map (the XDP programs
// keep their own reference until they are closed). Idempotent.
func (f *FastPath) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for _, l := range f.links {
		errs = append(errs, l.Close())
	}
	f.links = nil
	if f.coll != nil {
		f.coll.Close()
		f.coll = nil
	}
	return errors.Join(errs...)
}

// Now is the clock of the fast path's "last seen" (bpf_ktime_get_ns:
// CLOCK_MONOTONIC), in ns.
func Now() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}
