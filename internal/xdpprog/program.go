package xdpprog

import (
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// Names inside the CollectionSpec; they also show up in bpftool output.
const (
	xskMapName  = steerMapXskgateXsks
	seqMapName  = steerMapXskgateSeqs
	statMapName = steerMapXskgateStats
)

const maxQueues = 1 << 16 // far above any NIC; catches unit mix-ups

// Options selects the program variant.
type Options struct {
	// Carrier is how the record reaches user space; resolve CarrierAuto
	// with ChooseCarrier first.
	Carrier Carrier
	// LenSkew is added to the length the program writes into each record.
	// Non-zero only to plant a length mismatch in tests and demonstrations:
	// the integrity checks must catch every such frame.
	LenSkew int32
	// FirstLine runs the in-kernel first line (lists, penalty box,
	// out-of-state drops, SYN cookies) before the hand-over: for the outer
	// interface. Its stages start off; FirstLine (the type) switches them.
	FirstLine bool
	// Flows sizes the map of tracked flows the out-of-state stage consults
	// (default 1<<20 with FirstLine, else 1).
	Flows int
	// Fast is the fast path whose map this program consults (nil: none);
	// FastInner says the program is the inner interface's.
	Fast      *FastPath
	FastInner bool
	// testGrow makes the program refuse to grow a frame for a cookie
	// SYN-ACK at its tail (growNoTail) or anywhere (growNone): tests only.
	testGrow uint32
}

// Values of Options.testGrow (steer.c's GROW_*).
const (
	growNoTail = 1
	growNone   = 2
)

// progNames maps a carrier to its entry point in bpf/steer.c.
var progNames = [...]string{CarrierMeta: steerProgXskgateMeta, CarrierHead: steerProgXskgateHead, CarrierNone: steerProgXskgateNone}

// collectionSpec is the program variant o with maps for queues queues.
func collectionSpec(queues int, o Options) (*ebpf.CollectionSpec, error) {
	spec, err := loadSteer()
	if err != nil {
		return nil, err
	}
	// Only the entry point of the carrier is loaded: a kernel that refuses
	// bpf_xdp_adjust_meta must never see the meta variant.
	want := progNames[o.Carrier]
	for name := range spec.Programs {
		if name != want {
			delete(spec.Programs, name)
		}
	}
	spec.Maps[xskMapName].MaxEntries = uint32(queues)
	spec.Maps[seqMapName].MaxEntries = uint32(queues)
	flows := o.Flows
	if flows == 0 {
		flows = 1
		if o.FirstLine {
			flows = 1 << 20
		}
	}
	spec.Maps[steerMapXskgateFlows].MaxEntries = uint32(flows)
	if !o.FirstLine {
		// The maps exist (one object), but stay as small as the kernel
		// allows: nothing will ever be put in them.
		for _, m := range []string{steerMapXskgatePenalty, steerMapXskgateAllow4, steerMapXskgateAllow6,
			steerMapXskgateBlock4, steerMapXskgateBlock6, steerMapXskgateScope4, steerMapXskgateScope6} {
			spec.Maps[m].MaxEntries = 1
		}
	}
	if err := spec.Variables[steerVarLenSkew].Set(o.LenSkew); err != nil {
		return nil, err
	}
	fl := uint32(0)
	if o.FirstLine {
		fl = 1
	}
	if err := spec.Variables[steerVarFirstLine].Set(fl); err != nil {
		return nil, err
	}
	if err := spec.Variables[steerVarTestGrow].Set(o.testGrow); err != nil {
		return nil, err
	}
	fast := uint32(0) // steer.c's FAST_*
	if o.Fast != nil {
		fast = 1
		if o.FastInner {
			fast = 2
		}
		spec.Maps[steerMapXskgateFast].MaxEntries = uint32(o.Fast.size)
	}
	if err := spec.Variables[steerVarFastPath].Set(fast); err != nil {
		return nil, err
	}

	return spec, nil
}

// Program is the loaded XDP program with its XSKMAP and sequence map. Use
// one Program per interface.
type Program struct {
	queues  int
	carrier Carrier
	// mu guards coll against Close while a FirstLine uses the maps.
	mu   sync.RWMutex
	coll *ebpf.Collection // owns the program and every map
	// firstLine: loaded with Options.FirstLine (FirstLine feeds it).
	firstLine bool
	prog      *ebpf.Program
	xsks      *ebpf.Map
	seqs      *ebpf.Map
	stats     *ebpf.Map
}

var memlockOnce sync.Once

func removeMemlock() { _ = rlimit.RemoveMemlock() }

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
	memlockOnce.Do(removeMemlock)

	spec, err := collectionSpec(queues, o)
	if err != nil {
		return nil, fmt.Errorf("load xdp program: %w", err)
	}
	var shared map[string]*ebpf.Map
	if o.Fast != nil {
		o.Fast.mu.RLock()
		defer o.Fast.mu.RUnlock()
		if o.Fast.coll == nil {
			return nil, errors.New("load xdp program: the fast path is closed")
		}
		shared = map[string]*ebpf.Map{steerMapXskgateFast: o.Fast.flows}
	}
	coll, err := loadCollection(spec, shared)
	if err != nil {
		return nil, loadError(err)
	}
	p := &Program{
		queues:    queues,
		carrier:   o.Carrier,
		coll:      coll,
		firstLine: o.FirstLine,
		prog:      coll.Programs[progNames[o.Carrier]],
		xsks:      coll.Maps[xskMapName],
		seqs:      coll.Maps[seqMapName],
		stats:     coll.Maps[statMapName],
	}
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
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.coll == nil {
		return nil
	}
	p.coll.Close()
	p.coll, p.prog, p.xsks, p.seqs, p.stats = nil, nil, nil, nil, nil
	return nil
}

// loadCollection loads spec's programs and maps, but not its Variables:
// ebpf.NewCollection hands those back by mmapping the data sections, and
// cilium/ebpf unmaps that memory only when the GC collects it; until then
// the mapping keeps the .rodata map in the kernel after Close
// (TestCloseLeavesNothing in internal/gate). The variables' values still
// reach the maps at load (LoadAndAssign writes them into the data
// sections); nothing here reads them back. LoadAndAssign loads what a
// struct's tags name, so the struct is built for this spec.
// shared are maps of another collection that spec's maps of the same name
// stand for (ebpf.CollectionOptions.MapReplacements).
func loadCollection(spec *ebpf.CollectionSpec, shared map[string]*ebpf.Map) (*ebpf.Collection, error) {
	var fields []reflect.StructField
	var progs, maps []string
	for name := range spec.Programs {
		progs = append(progs, name)
		fields = append(fields, reflect.StructField{Name: fmt.Sprintf("P%d", len(fields)),
			Type: reflect.TypeFor[*ebpf.Program](), Tag: reflect.StructTag(`ebpf:"` + name + `"`)})
	}
	for name := range spec.Maps {
		maps = append(maps, name)
		fields = append(fields, reflect.StructField{Name: fmt.Sprintf("M%d", len(fields)),
			Type: reflect.TypeFor[*ebpf.Map](), Tag: reflect.StructTag(`ebpf:"` + name + `"`)})
	}
	v := reflect.New(reflect.StructOf(fields)).Elem()
	if err := spec.LoadAndAssign(v.Addr().Interface(), &ebpf.CollectionOptions{MapReplacements: shared}); err != nil {
		return nil, err
	}
	coll := &ebpf.Collection{Programs: map[string]*ebpf.Program{}, Maps: map[string]*ebpf.Map{}}
	for k, name := range progs {
		coll.Programs[name] = v.Field(k).Interface().(*ebpf.Program)
	}
	for k, name := range maps {
		coll.Maps[name] = v.Field(len(progs) + k).Interface().(*ebpf.Map)
	}
	return coll, nil
}
