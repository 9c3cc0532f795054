package xdpprog

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/rlimit"
)

// Names inside the CollectionSpec; they also show up in bpftool output.
const (
	progName    = "xskgate_steer"
	xskMapName  = "xskgate_xsks"
	seqMapName  = "xskgate_seqs"
	statMapName = "xskgate_stats"
)

const (
	maxQueues = 1 << 16 // far above any NIC; catches unit mix-ups
	xdpDrop   = 1       // XDP_DROP
	xdpPass   = 2       // XDP_PASS, the redirect's empty-slot fallback

	// struct xdp_md field offsets (UAPI, stable).
	xdpMdData   = 0
	xdpMdEnd    = 4
	xdpMdMeta   = 8
	xdpMdRxQIdx = 16
)

// Indices of the program's per-CPU counters (Counters).
const (
	statMetaRefused = iota // bpf_xdp_adjust_meta failed at run time: record carried in front instead
	statNoHeadroom         // bpf_xdp_adjust_head failed too: frame dropped
	numStats
)

// Options selects the program variant.
type Options struct {
	// Carrier is how the record reaches user space; resolve CarrierAuto
	// with ChooseCarrier first.
	Carrier Carrier
	// LenSkew is added to the length the program writes into each record.
	// Non-zero only to plant a length mismatch in tests and demonstrations:
	// the integrity checks must catch every such frame.
	LenSkew int32
}

// instructions returns the program for o. Register use:
//
//	r6 ctx, r7 rx_queue_index, r8 the record's magic, r9 the record.
//
// r6-r9 are callee-saved, so they survive the helper calls; packet pointers
// stay valid across bpf_map_lookup_elem because it does not change packet
// data (bpf_xdp_adjust_meta and _head do, hence the reloads after them).
func instructions(o Options) asm.Instructions {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R7, asm.R6, xdpMdRxQIdx, asm.Word),
	}
	switch o.Carrier {
	case CarrierNone:
		return append(insns, redirect()...)
	case CarrierMeta:
		insns = append(insns,
			// Reserve the metadata area; a driver without metadata
			// support makes the helper fail: carry the record in front.
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.Mov.Imm(asm.R2, -MetaSize),
			asm.FnXdpAdjustMeta.Call(),
			asm.JNE.Imm(asm.R0, 0, "meta_refused"),
			// The helper invalidated every packet pointer: reload, and
			// prove data_meta+MetaSize <= data so the stores verify.
			asm.LoadMem(asm.R9, asm.R6, xdpMdMeta, asm.Word),
			asm.LoadMem(asm.R1, asm.R6, xdpMdData, asm.Word),
			asm.Mov.Reg(asm.R2, asm.R9),
			asm.Add.Imm(asm.R2, MetaSize),
			asm.JGT.Reg(asm.R2, asm.R1, "redirect"),
			asm.Mov.Imm32(asm.R8, int32(MetaMagic)),
			asm.Ja.Label("write"),
		)
		insns = append(insns, count(statMetaRefused, "meta_refused")...)
	}
	insns = append(insns,
		// Prepend the record. Failure means the driver left less than
		// MetaSize bytes of headroom: the frame cannot be carried with
		// its record, and forwarding it without one would make its first
		// bytes ambiguous. Drop it and count it.
		asm.Mov.Reg(asm.R1, asm.R6).WithSymbol("head"),
		asm.Mov.Imm(asm.R2, -MetaSize),
		asm.FnXdpAdjustHead.Call(),
		asm.JNE.Imm(asm.R0, 0, "no_headroom"),
		asm.LoadMem(asm.R9, asm.R6, xdpMdData, asm.Word),
		asm.LoadMem(asm.R1, asm.R6, xdpMdEnd, asm.Word),
		asm.Mov.Reg(asm.R2, asm.R9),
		asm.Add.Imm(asm.R2, MetaSize),
		asm.JGT.Reg(asm.R2, asm.R1, "no_headroom"),
		asm.Mov.Imm32(asm.R8, int32(HeadMagic)),
	)
	insns = append(insns, write(o.LenSkew)...)
	insns = append(insns, redirect()...)
	insns = append(insns, count(statNoHeadroom, "no_headroom")...)
	return append(insns,
		asm.Mov.Imm(asm.R0, xdpDrop),
		asm.Return(),
	)
}

// write stores the record at r9 with magic r8: the frame is the MetaSize
// bytes after r9 up to data_end, in both carriers.
func write(skew int32) asm.Instructions {
	insns := asm.Instructions{
		asm.StoreMem(asm.R9, metaOffMagic, asm.R8, asm.Word).WithSymbol("write"),
		// data_end - (record + MetaSize): pointer subtraction, which the
		// verifier allows to CAP_PERFMON holders only (see Load's
		// permission hint).
		asm.LoadMem(asm.R1, asm.R6, xdpMdEnd, asm.Word),
		asm.Sub.Reg(asm.R1, asm.R9),
		asm.Add.Imm(asm.R1, -MetaSize+skew),
		asm.StoreMem(asm.R9, metaOffLen, asm.R1, asm.Word),
		// seq = ++seqs[rx_queue_index], 0 if the queue is beyond the map.
		// A plain load/add/store, not an atomic: NAPI serialises a queue,
		// and a lost update is exactly what user space should be able to
		// observe if it ever does not.
		asm.StoreMem(asm.RFP, -4, asm.R7, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(seqMapName),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.Mov.Imm(asm.R1, 0),
		asm.JEq.Imm(asm.R0, 0, "store_seq"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Word),
		asm.Add.Imm32(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.Word),
		asm.StoreMem(asm.R9, metaOffSeq, asm.R1, asm.Word).WithSymbol("store_seq"),
		asm.StoreMem(asm.R9, metaOffQueue, asm.R7, asm.Word),
	}
	return insns
}

// redirect steers the frame to the socket of its queue. An empty slot
// yields XDP_PASS: no socket, no interference.
func redirect() asm.Instructions {
	return asm.Instructions{
		asm.LoadMapPtr(asm.R1, 0).WithReference(xskMapName).WithSymbol("redirect"),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Mov.Imm(asm.R3, xdpPass),
		asm.FnRedirectMap.Call(),
		asm.Return(),
	}
}

// count adds one to per-CPU counter idx; the block is labelled sym and
// falls through to what follows it.
func count(idx int32, sym string) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Imm(asm.R1, idx).WithSymbol(sym),
		asm.StoreMem(asm.RFP, -8, asm.R1, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(statMapName),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, sym+"_done"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol(sym + "_done"), // a landing pad for the jump
	}
}

// collectionSpec describes the program and its maps for queues queues.
func collectionSpec(queues int, o Options) *ebpf.CollectionSpec {
	return &ebpf.CollectionSpec{
		Maps: map[string]*ebpf.MapSpec{
			xskMapName: {
				Name:       xskMapName,
				Type:       ebpf.XSKMap,
				KeySize:    4,
				ValueSize:  4,
				MaxEntries: uint32(queues),
			},
			seqMapName: {
				Name:       seqMapName,
				Type:       ebpf.Array,
				KeySize:    4,
				ValueSize:  4,
				MaxEntries: uint32(queues),
			},
			statMapName: {
				Name:       statMapName,
				Type:       ebpf.PerCPUArray,
				KeySize:    4,
				ValueSize:  8,
				MaxEntries: numStats,
			},
		},
		Programs: map[string]*ebpf.ProgramSpec{
			progName: {
				Name:         progName,
				Type:         ebpf.XDP,
				Instructions: instructions(o),
				License:      "GPL", // bpf_redirect_map and friends are GPL-only
			},
		},
	}
}

// Program is the loaded XDP program with its XSKMAP and sequence map. Use
// one Program per interface.
type Program struct {
	queues  int
	carrier Carrier
	prog    *ebpf.Program
	xsks    *ebpf.Map
	seqs    *ebpf.Map
	stats   *ebpf.Map
}

var memlockOnce sync.Once

// Load verifies and loads the program variant o with room for queues RX
// queues (indices 0..queues-1). Frames on higher queues are passed to the
// stack. o.Carrier must be resolved (ChooseCarrier), not CarrierAuto.
func Load(queues int, o Options) (*Program, error) {
	if queues < 1 || queues > maxQueues {
		return nil, fmt.Errorf("load xdp program: queue count %d out of range [1, %d]", queues, maxQueues)
	}
	if o.Carrier == CarrierAuto || o.Carrier > CarrierNone {
		return nil, fmt.Errorf("load xdp program: carrier %s: resolve it with ChooseCarrier first", o.Carrier)
	}
	// Kernels before memcg accounting (5.11) charge BPF memory against
	// RLIMIT_MEMLOCK. RemoveMemlock is a no-op on newer kernels; if it
	// fails the load below still gets a chance and reports any real error.
	memlockOnce.Do(func() { _ = rlimit.RemoveMemlock() })

	coll, err := ebpf.NewCollection(collectionSpec(queues, o))
	if err != nil {
		return nil, loadError(err)
	}
	p := &Program{
		queues:  queues,
		carrier: o.Carrier,
		prog:    coll.DetachProgram(progName),
		xsks:    coll.DetachMap(xskMapName),
		seqs:    coll.DetachMap(seqMapName),
		stats:   coll.DetachMap(statMapName),
	}
	coll.Close() // now empty
	return p, nil
}

// Queues returns the queue count the Program was loaded with.
func (p *Program) Queues() int { return p.queues }

// Carrier returns the carrier the Program was loaded with.
func (p *Program) Carrier() Carrier { return p.carrier }

// Counters are the program's own counts, summed over CPUs.
type Counters struct {
	// MetaRefused counts frames whose bpf_xdp_adjust_meta failed at run
	// time (a driver without metadata support): their record was carried
	// in front of the frame instead (CarrierMeta only).
	MetaRefused uint64
	// NoHeadroom counts frames dropped because bpf_xdp_adjust_head could
	// not prepend the record either.
	NoHeadroom uint64
}

// Counters reads the program's per-CPU counters.
func (p *Program) Counters() (Counters, error) {
	var c Counters
	for i, dst := range []*uint64{&c.MetaRefused, &c.NoHeadroom} {
		var per []uint64
		if err := p.stats.Lookup(uint32(i), &per); err != nil {
			return Counters{}, fmt.Errorf("read xdp program counters: %w", err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	return c, nil
}

func (p *Program) checkQueue(op string, queue int) error {
	if queue < 0 || queue >= p.queues {
		return fmt.Errorf("%s queue %d: out of range [0, %d)", op, queue, p.queues)
	}
	return nil
}

// Register steers frames of queue to the AF_XDP socket fd. The socket must
// already be bound to that interface and queue with an RX ring; the kernel
// keeps its own reference, and closing the socket removes it from the map.
func (p *Program) Register(queue int, fd int) error {
	if err := p.checkQueue("register socket on", queue); err != nil {
		return err
	}
	if fd < 0 {
		return fmt.Errorf("register socket on queue %d: invalid fd %d", queue, fd)
	}
	if err := p.xsks.Put(uint32(queue), uint32(fd)); err != nil {
		return fmt.Errorf("register socket fd %d on queue %d: %w", fd, queue, registerHint(err))
	}
	return nil
}

// Unregister removes the socket of queue, whose frames then pass to the
// stack. Unregistering an empty slot is not an error.
func (p *Program) Unregister(queue int) error {
	if err := p.checkQueue("unregister socket on", queue); err != nil {
		return err
	}
	if err := p.xsks.Delete(uint32(queue)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unregister socket on queue %d: %w", queue, err)
	}
	return nil
}

// Sequence returns the last sequence number written for queue, which is
// also the number of frames that received a Meta record on it (mod 2^32).
func (p *Program) Sequence(queue int) (uint32, error) {
	if err := p.checkQueue("read sequence of", queue); err != nil {
		return 0, err
	}
	var v uint32
	if err := p.seqs.Lookup(uint32(queue), &v); err != nil {
		return 0, fmt.Errorf("read sequence of queue %d: %w", queue, err)
	}
	return v, nil
}

// Raw returns the underlying program, e.g. for BPF_PROG_RUN. It is owned by
// p and must not be closed by the caller.
func (p *Program) Raw() *ebpf.Program { return p.prog }

// Close releases the program and its maps. Existing Attachments keep the
// program alive in the kernel until they are closed. Close is idempotent.
func (p *Program) Close() error {
	var errs []error
	if p.prog != nil {
		errs = append(errs, p.prog.Close())
		p.prog = nil
	}
	if p.xsks != nil {
		errs = append(errs, p.xsks.Close())
		p.xsks = nil
	}
	if p.seqs != nil {
		errs = append(errs, p.seqs.Close())
		p.seqs = nil
	}
	if p.stats != nil {
		errs = append(errs, p.stats.Close())
		p.stats = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close xdp program: %w", err)
	}
	return nil
}
