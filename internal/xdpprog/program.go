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
	progName   = "xskgate_steer"
	xskMapName = "xskgate_xsks"
	seqMapName = "xskgate_seqs"
)

const (
	maxQueues = 1 << 16 // far above any NIC; catches unit mix-ups
	xdpPass   = 2       // XDP_PASS, the redirect's empty-slot fallback

	// struct xdp_md field offsets (UAPI, stable).
	xdpMdData   = 0
	xdpMdEnd    = 4
	xdpMdMeta   = 8
	xdpMdRxQIdx = 16
)

// instructions returns the program. Register use:
//
//	r6 ctx, r7 rx_queue_index, r8 data_meta, r9 data.
//
// r6-r9 are callee-saved, so they survive the helper calls; packet pointers
// stay valid across bpf_map_lookup_elem because it does not change packet
// data (only bpf_xdp_adjust_meta does, hence the reload after it).
func instructions() asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R7, asm.R6, xdpMdRxQIdx, asm.Word),

		// Reserve the metadata. Failure (no headroom, driver without
		// metadata support) only skips the record.
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, -MetaSize),
		asm.FnXdpAdjustMeta.Call(),
		asm.JNE.Imm(asm.R0, 0, "redirect"),

		// adjust_meta invalidated every packet pointer: reload, and prove
		// data_meta+MetaSize <= data so the verifier accepts the stores.
		asm.LoadMem(asm.R8, asm.R6, xdpMdMeta, asm.Word),
		asm.LoadMem(asm.R9, asm.R6, xdpMdData, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R8),
		asm.Add.Imm(asm.R1, MetaSize),
		asm.JGT.Reg(asm.R1, asm.R9, "redirect"),

		asm.StoreImm(asm.R8, metaOffMagic, int64(MetaMagic), asm.Word),
		// data_end - data: pointer subtraction, which the verifier allows
		// to CAP_PERFMON holders only (see Load's permission hint).
		asm.LoadMem(asm.R1, asm.R6, xdpMdEnd, asm.Word),
		asm.Sub.Reg(asm.R1, asm.R9),
		asm.StoreMem(asm.R8, metaOffLen, asm.R1, asm.Word),

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
		asm.StoreMem(asm.R8, metaOffSeq, asm.R1, asm.Word).WithSymbol("store_seq"),
		asm.StoreMem(asm.R8, metaOffQueue, asm.R7, asm.Word),

		// An empty slot yields XDP_PASS: no socket, no interference.
		asm.LoadMapPtr(asm.R1, 0).WithReference(xskMapName).WithSymbol("redirect"),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Mov.Imm(asm.R3, xdpPass),
		asm.FnRedirectMap.Call(),
		asm.Return(),
	}
}

// collectionSpec describes the program and its two maps for queues queues.
func collectionSpec(queues int) *ebpf.CollectionSpec {
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
		},
		Programs: map[string]*ebpf.ProgramSpec{
			progName: {
				Name:         progName,
				Type:         ebpf.XDP,
				Instructions: instructions(),
				License:      "GPL", // bpf_redirect_map and friends are GPL-only
			},
		},
	}
}

// Program is the loaded XDP program with its XSKMAP and sequence map. Use
// one Program per interface.
type Program struct {
	queues int
	prog   *ebpf.Program
	xsks   *ebpf.Map
	seqs   *ebpf.Map
}

var memlockOnce sync.Once

// Load verifies and loads the program with room for queues RX queues
// (indices 0..queues-1). Frames on higher queues are passed to the stack
// with a zero sequence number.
func Load(queues int) (*Program, error) {
	if queues < 1 || queues > maxQueues {
		return nil, fmt.Errorf("load xdp program: queue count %d out of range [1, %d]", queues, maxQueues)
	}
	// Kernels before memcg accounting (5.11) charge BPF memory against
	// RLIMIT_MEMLOCK. RemoveMemlock is a no-op on newer kernels; if it
	// fails the load below still gets a chance and reports any real error.
	memlockOnce.Do(func() { _ = rlimit.RemoveMemlock() })

	coll, err := ebpf.NewCollection(collectionSpec(queues))
	if err != nil {
		return nil, loadError(err)
	}
	p := &Program{
		queues: queues,
		prog:   coll.DetachProgram(progName),
		xsks:   coll.DetachMap(xskMapName),
		seqs:   coll.DetachMap(seqMapName),
	}
	coll.Close() // now empty
	return p, nil
}

// Queues returns the queue count the Program was loaded with.
func (p *Program) Queues() int { return p.queues }

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
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close xdp program: %w", err)
	}
	return nil
}
