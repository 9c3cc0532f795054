package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/packet"
	"github.com/xskgate/xskgate/internal/xdpprog"
	"github.com/xskgate/xskgate/internal/xsk"
)

// Config tunes the engine. Zero values take the defaults.
type Config struct {
	Batch      int    // descriptors per ring operation (default 64)
	FillTarget uint32 // frames kept posted on each FILL ring (default: a quarter of the worker's share, at most the ring size)
	Inspector  Inspector
	// NewChecker, when set, gives each worker its integrity checker.
	NewChecker func(worker int, outer, inner Port) Checker
	// CPUs pins worker i to CPUs[i%len(CPUs)]. Empty: not pinned. Keep
	// workers off the cores that run the interfaces' NAPI: a worker spinning
	// beside the softirq that feeds it starves it.
	CPUs []int
	// Nice is the worker threads' nice value (0: unchanged; below 0
	// needs CAP_SYS_NICE). On a machine shared with other work, a pinned
	// worker otherwise gets only its fair share of its core.
	Nice     int
	SpinIdle int // empty iterations before sleeping (default 256)
	// InjectFillWhileTx, for demonstrations and tests only, plants a user
	// bug: with this probability per TX batch, the last frame just put on
	// TX is also posted to the other port's FILL ring, so it would sit in
	// two rings at once. The Checker must catch it (its PostFill vetoes
	// the post); without one, the bug really happens.
	InjectFillWhileTx float64
	// Carrier is how the XDP program hands its record to user space: the
	// engine strips a record carried in front of the frame before the
	// Inspector sees it, so no frame leaves with it. The zero value
	// (CarrierAuto) accepts either kind, as CarrierMeta does.
	Carrier xdpprog.Carrier
	// NoChecksumCompletion leaves partial checksums alone. By default a
	// TCP or UDP checksum that holds only the pseudo-header sum (what a
	// sender with checksum offload hands its device, e.g. every veth) is
	// completed before the Inspector sees the frame: AF_XDP loses the
	// offload state, and the next hop would drop the packet.
	NoChecksumCompletion bool
	Logger               *slog.Logger
}

// Pair is queue q of both interfaces: the ports one worker owns.
type Pair struct{ Outer, Inner Port }

// Engine runs one worker per Pair over a shared UMEM.
type Engine struct {
	umem    *xsk.Umem
	cfg     Config
	workers []*Worker
	stop    atomic.Bool
	down    [2]atomic.Bool // per Side: link down, see SetLinkDown
	running sync.WaitGroup
	log     *slog.Logger
}

// New partitions the UMEM's frames between the pairs' workers.
func New(umem *xsk.Umem, pairs []Pair, cfg Config) (*Engine, error) {
	if len(pairs) == 0 {
		return nil, errors.New("engine needs at least one queue pair")
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 64
	}
	if cfg.SpinIdle <= 0 {
		cfg.SpinIdle = 256
	}
	if cfg.Inspector == nil {
		cfg.Inspector = ForwardAll{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	share := umem.NumFrames() / uint32(len(pairs))
	if share < uint32(4*cfg.Batch) {
		return nil, fmt.Errorf("%d frames for %d queue pairs leaves %d per worker: need at least %d (4 batches); raise the frame count", umem.NumFrames(), len(pairs), share, 4*cfg.Batch)
	}
	e := &Engine{umem: umem, cfg: cfg, log: cfg.Logger}
	for i, p := range pairs {
		w, err := newWorker(e, i, p, uint32(i)*share, share)
		if err != nil {
			return nil, err
		}
		e.workers = append(e.workers, w)
	}
	return e, nil
}

// Workers returns the workers, for stats.
func (e *Engine) Workers() []*Worker { return e.workers }

// Start runs every worker in its own goroutine locked to an OS thread.
func (e *Engine) Start() {
	for _, w := range e.workers {
		e.running.Add(1)
		go func() {
			defer e.running.Done()
			w.run()
		}()
	}
}

// Stop asks the workers to finish: each forwards what is already on its RX
// rings, transmits what it holds and waits (up to drain) for its
// completions, then returns. Detach the XDP program first so nothing new
// arrives. Stop returns when every worker has returned.
func (e *Engine) Stop(drain time.Duration) error {
	for _, w := range e.workers {
		w.drain = drain
	}
	e.stop.Store(true)
	e.running.Wait()
	var errs []error
	for _, w := range e.workers {
		if w.err != nil {
			errs = append(errs, w.err)
		}
	}
	return errors.Join(errs...)
}

// Err returns the first fatal worker error, if any worker stopped on one.
func (e *Engine) Err() error {
	for _, w := range e.workers {
		if w.failed.Load() {
			return w.err
		}
	}
	return nil
}

// Accounting sums every worker's frame accounting.
func (e *Engine) Accounting() Accounting {
	var s Accounting
	for _, w := range e.workers {
		a := w.Accounting()
		s.Total += a.Total
		s.Free += a.Free
		s.Fill += a.Fill
		s.Tx += a.Tx
		s.Quarantined += a.Quarantined
	}
	return s
}

// port is one side of a worker.
type port struct {
	Port
	side           Side
	fill           *xsk.FillRing
	comp           *xsk.CompRing
	rx             *xsk.RxRing
	tx             *xsk.TxRing
	fd             int        // for poll(2); -1 when the port cannot be polled
	waker          rxWaker    // wakes a zero-copy driver's RX; nil if the port cannot
	txq            []xsk.Desc // to transmit at the end of this iteration
	stats          *PortStats
	fillOut, txOut int // frames posted to FILL / TX not back yet
}

// Worker owns queue q of both interfaces.
type Worker struct {
	e     *Engine
	id    int
	ports [2]port
	Stats [2]PortStats // indexed by Side

	lo, hi uint64   // the worker's UMEM range: chunks [lo, hi)
	free   []uint64 // chunk base addresses, used as a stack
	total  int
	quar   int
	check  Checker
	insp   Inspector
	batch  int
	target int

	// scratch, sized once
	parsed packet.Packet // for checksum completion
	descs  []xsk.Desc
	addrs  []uint64
	pkts   []Packet
	disp   []Disposition
	pfds   []unix.PollFd
	extra  spare // the Inspector's Extra (extra.go), if it is an ExtraUser

	inject     float64 // probability per TX batch of the FILL-while-on-TX user bug
	injectRand uint64

	acct  accountingCell
	drain time.Duration
	// deferKick: frames are arriving, so transmit kicks only once a
	// sendto's worth waits on TX (see iterate); emptyLoops counts the
	// loops in a row that received nothing.
	deferKick  bool
	emptyLoops int
	err        error
	failed     atomic.Bool
	cpu        int
}

func newWorker(e *Engine, id int, p Pair, first, n uint32) (*Worker, error) {
	fs := uint64(e.umem.FrameSize())
	w := &Worker{
		e: e, id: id, insp: e.cfg.Inspector, batch: e.cfg.Batch,
		lo: uint64(first) * fs, hi: uint64(first+n) * fs,
		total: int(n), free: make([]uint64, 0, n), cpu: -1,
		descs:  make([]xsk.Desc, e.cfg.Batch),
		addrs:  make([]uint64, e.cfg.Batch),
		pkts:   make([]Packet, e.cfg.Batch),
		disp:   make([]Disposition, e.cfg.Batch),
		inject: e.cfg.InjectFillWhileTx, injectRand: uint64(id)*0x9e3779b97f4a7c15 + 1,
	}
	if len(e.cfg.CPUs) > 0 {
		w.cpu = e.cfg.CPUs[id%len(e.cfg.CPUs)]
	}
	// Hand out low addresses last so they are posted first: easier to read
	// in dumps.
	for i := int(n) - 1; i >= 0; i-- {
		w.free = append(w.free, uint64(first+uint32(i))*fs)
	}
	for s, pp := range [2]Port{p.Outer, p.Inner} {
		fill, comp, rx, tx := pp.Rings()
		if fill == nil || comp == nil || rx == nil || tx == nil {
			return nil, fmt.Errorf("worker %d: %s %s queue %d needs FILL, COMPLETION, RX and TX rings", id, Side(s), pp.Ifname(), pp.Queue())
		}
		// A TX queue takes a batch of bounces, a batch of the other
		// port's forwards and up to two batches of Extra frames (see
		// spare.Frame): sized once, it never grows.
		pt := port{Port: pp, side: Side(s), fill: fill, comp: comp, rx: rx, tx: tx, fd: -1, stats: &w.Stats[s],
			txq: make([]xsk.Desc, 0, 4*e.cfg.Batch)}
		if pl, ok := pp.(pollable); ok {
			pt.fd = pl.FD()
		}
		pt.waker, _ = pp.(rxWaker)
		w.ports[s] = pt
	}
	w.target = int(e.cfg.FillTarget)
	if w.target == 0 {
		// Post half the share to the two FILL rings and keep half free:
		// frames spend time on TX and COMPLETION, and a burst arriving
		// while many are in flight must still find FILL stocked.
		w.target = int(n) / 4
	}
	for s := range w.ports {
		w.target = min(w.target, int(w.ports[s].fill.Size()))
	}
	if e.cfg.NewChecker != nil {
		w.check = e.cfg.NewChecker(id, p.Outer, p.Inner)
	}
	if w.ports[0].fd >= 0 && w.ports[1].fd >= 0 {
		w.pfds = []unix.PollFd{{Fd: int32(w.ports[0].fd), Events: unix.POLLIN}, {Fd: int32(w.ports[1].fd), Events: unix.POLLIN}}
	}
	w.offerExtra()
	w.publish()
	return w, nil
}

// owns reports whether the chunk at base is in the worker's share: only
// those may go back to its free list.
func (w *Worker) owns(base uint64) bool { return base >= w.lo && base < w.hi }

// Accounting returns the worker's frame accounting as of its last iteration.
func (w *Worker) Accounting() Accounting { return w.acct.load() }

// ID is the worker's index (its queue).
func (w *Worker) ID() int { return w.id }

// Port returns the worker's port on side s.
func (w *Worker) Port(s Side) Port { return w.ports[s].Port }

func (w *Worker) publish() {
	w.acct.store(Accounting{Total: w.total, Free: len(w.free),
		Fill: w.ports[0].fillOut + w.ports[1].fillOut,
		Tx:   w.ports[0].txOut + w.ports[1].txOut, Quarantined: w.quar})
}

func (w *Worker) fail(err error) {
	w.err = fmt.Errorf("worker %d: %w", w.id, err)
	w.failed.Store(true)
	w.e.log.Error("worker stopped", "worker", w.id, "err", err)
}

func (w *Worker) run() {
	// One OS thread per worker: pinning and the flight recorder's thread id
	// mean something only if the goroutine stays put.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// A bug here must not take the process down before it detaches its
	// programs: stop this worker with an error and let the owner tear down.
	defer func() {
		if p := recover(); p != nil {
			w.fail(fmt.Errorf("panic: %v\n%s", p, debug.Stack()))
		}
	}()
	if w.cpu >= 0 {
		var old, set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &old); err == nil {
			// The thread goes back to the runtime's pool afterwards:
			// unpinned, or it would carry other goroutines to this core.
			defer unix.SchedSetaffinity(0, &old)
		}
		set.Set(w.cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			w.e.log.Warn("cannot pin worker", "worker", w.id, "cpu", w.cpu, "err", err)
		}
	}
	if nice := w.e.cfg.Nice; nice != 0 {
		// The nice value is a thread's on Linux; the raw getpriority(2)
		// returns 20 - nice.
		tid := unix.Gettid()
		raw, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
		if err == nil {
			err = unix.Setpriority(unix.PRIO_PROCESS, tid, nice)
		}
		if err != nil {
			w.e.log.Warn("cannot set the worker's nice value", "worker", w.id, "nice", nice, "err", err)
		} else {
			defer unix.Setpriority(unix.PRIO_PROCESS, tid, 20-raw)
		}
	}
	idle := 0
	for !w.e.stop.Load() {
		n, err := w.iterate(true)
		if err != nil {
			w.fail(err)
			return
		}
		if n > 0 {
			idle = 0
			continue
		}
		if idle++; idle >= w.e.cfg.SpinIdle {
			w.sleep()
			idle = 0
		}
	}
	w.finish()
}

// finish forwards what is left on RX, transmits, and waits for completions.
func (w *Worker) finish() {
	deadline := time.Now().Add(w.drain)
	for {
		n, err := w.iterate(false)
		if err != nil {
			w.fail(err)
			return
		}
		if w.txWaiting() == 0 && n == 0 {
			w.leftOnDownTx()
			return
		}
		if time.Now().After(deadline) {
			w.e.log.Warn("drain timed out", "worker", w.id, "tx_outstanding", w.txWaiting())
			return
		}
		if n == 0 {
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// iterate runs the five stages once and returns how many descriptors moved.
func (w *Worker) iterate(refill bool) (int, error) {
	work := 0
	for i := range w.ports {
		n, err := w.complete(&w.ports[i])
		if err != nil {
			return work, err
		}
		work += n
	}
	if refill {
		for i := range w.ports {
			if err := w.refill(&w.ports[i]); err != nil {
				return work, err
			}
		}
	}
	received := 0
	for i := range w.ports {
		n, err := w.receive(&w.ports[i])
		if err != nil {
			return work, err
		}
		received += n
	}
	work += received
	// While frames keep arriving, a kick waits until a sendto's worth is
	// on TX: a copy-mode sendto costs a syscall whatever it moves, and a
	// busy worker takes only a few frames per loop. After kickIdle loops
	// in a row that received nothing, what is left is kicked: a frame
	// waits at most that long (a few microseconds) after the last one
	// before it.
	if received > 0 {
		w.emptyLoops = 0
	} else if w.emptyLoops < kickIdle {
		w.emptyLoops++
	}
	w.deferKick = w.emptyLoops < kickIdle && refill
	for i := range w.ports {
		n, err := w.transmit(&w.ports[i])
		if err != nil {
			return work, err
		}
		work += n
	}
	if work == 0 && w.check != nil {
		w.check.Idle()
	}
	w.publish()
	return work, nil
}

// complete takes finished transmissions back into the free list, batch
// after batch while COMPLETION has more (a kick drains TX, which may
// complete several batches at once), at most a ring's worth.
func (w *Worker) complete(p *port) (int, error) {
	total := 0
	for limit := int(p.comp.Size()); total < limit; {
		n, err := w.completeBatch(p)
		total += n
		if err != nil || n < len(w.addrs) {
			return total, err
		}
	}
	return total, nil
}

// completeBatch takes one batch off COMPLETION.
func (w *Worker) completeBatch(p *port) (int, error) {
	n, err := p.comp.Get(w.addrs)
	if err != nil || n == 0 {
		return 0, err
	}
	addrs := w.addrs[:n]
	disp := w.disp[:n]
	clear(disp)
	nbad := 0
	if w.check != nil {
		nbad = w.check.Completed(p.side, addrs, disp)
	}
	umem := w.e.umem
	for i, a := range addrs {
		base, _ := umem.Chunk(a)
		if nbad > 0 && disp[i] == Free && w.owns(base) {
			w.free = append(w.free, base)
			p.stats.Drops[DropViolation].Add(1)
			continue
		}
		if nbad > 0 && disp[i] != Keep || !w.owns(base) {
			// Not a frame this worker sent, or one the checker distrusts:
			// it may be live elsewhere, so it never goes back to FILL.
			w.quar++
			p.stats.Drops[DropViolation].Add(1)
			continue
		}
		w.free = append(w.free, base)
	}
	p.txOut -= n
	p.stats.Completed.Add(uint64(n))
	p.stats.CompBatches.Add(1)
	return n, nil
}

// refill tops the FILL ring up to the target from the free list.
func (w *Worker) refill(p *port) error {
	want := min(w.target-p.fillOut, len(w.free), w.batch)
	if want <= 0 {
		if len(w.free) == 0 && p.fillOut < w.target {
			p.stats.FillEmpty.Add(1)
		}
		return nil
	}
	// The top of the free stack is what we post.
	cand := w.free[len(w.free)-want:]
	if w.check != nil {
		disp := w.disp[:want]
		clear(disp)
		w.check.PostFill(p.side, cand, disp)
		k := keepOnly(w, p, cand, disp)
		w.free = w.free[:len(w.free)-want+k]
		cand = cand[:k]
	}
	idx, n, err := p.fill.Reserve(uint32(len(cand)))
	if err != nil {
		return err
	}
	clearMeta := w.e.cfg.Carrier == xdpprog.CarrierMeta || w.e.cfg.Carrier == xdpprog.CarrierAuto
	rxOff := w.e.umem.RxOffset()
	for i := uint32(0); i < n; i++ {
		a := cand[len(cand)-1-int(i)]
		if clearMeta {
			// The last frame's record must not pass for the next one's.
			xdpprog.ClearMeta(w.e.umem.Area, a+rxOff)
		}
		*p.fill.Slot(idx + i) = a
	}
	p.fill.Submit()
	w.free = w.free[:len(w.free)-int(n)]
	p.fillOut += int(n)
	w.wakeFill(p)
	return nil
}

// receive takes a batch from RX and queues each frame by its verdict.
func (w *Worker) receive(p *port) (int, error) {
	n, err := p.rx.Get(w.descs)
	if err != nil || n == 0 {
		return 0, err
	}
	p.fillOut -= n
	descs := w.descs[:n]
	w.e.umem.Prefetch(descs)
	disp := w.disp[:n]
	clear(disp)
	nbad := 0
	if w.check != nil {
		nbad = w.check.Received(p.side, descs, disp)
	}
	umem := w.e.umem
	fs := uint64(umem.FrameSize())
	pkts := w.pkts[:0]
	var bytes uint64
	var ok bool
	for i, d := range descs {
		if nbad > 0 && disp[i] != Keep {
			p.stats.Drops[DropViolation].Add(1)
			if base, _ := umem.Chunk(d.Addr); disp[i] == Free && w.owns(base) {
				w.free = append(w.free, base)
			} else {
				w.quar++
			}
			continue
		}
		base, _ := umem.Chunk(d.Addr)
		if umem.Frame(d.Addr, d.Len) == nil || d.Len == 0 || !w.owns(base) {
			// The kernel consumed a FILL entry for this slot but the
			// descriptor does not name a frame of ours: withhold the loss.
			w.quar++
			p.stats.Drops[DropInvalidDesc].Add(1)
			continue
		}
		if d, ok = w.strip(p, d, base); !ok {
			w.free = append(w.free, base)
			continue
		}
		// Let the Inspector grow the frame in place up to the chunk end
		// (aligned chunks: the address is base + offset).
		data := umem.Area[d.Addr : d.Addr+uint64(d.Len) : base+fs]
		pkts = append(pkts, Packet{Desc: d, Data: data, Verdict: Forward, Len: d.Len})
		bytes += uint64(d.Len)
	}
	p.stats.RxPackets.Add(uint64(n))
	p.stats.RxBytes.Add(bytes)
	if len(pkts) == 0 {
		return n, nil
	}
	w.completeChecksums(p, pkts)
	w.insp.Inspect(w.id, p.side, pkts)
	other := &w.ports[p.side.Other()]
	var vc [numVerdicts]uint64
	for i := range pkts {
		pk := &pkts[i]
		v := pk.Verdict
		if v >= numVerdicts || (v != Drop && (pk.Len == 0 || int(pk.Len) > cap(pk.Data))) {
			v = Drop // an Inspector bug must not put a bad descriptor on TX
		}
		vc[v]++
		switch v {
		case Forward:
			other.txq = append(other.txq, xsk.Desc{Addr: pk.Desc.Addr, Len: pk.Len})
		case Bounce:
			p.txq = append(p.txq, xsk.Desc{Addr: pk.Desc.Addr, Len: pk.Len})
		default:
			base, _ := umem.Chunk(pk.Desc.Addr)
			w.free = append(w.free, base)
			p.stats.Drops[DropVerdict].Add(1)
		}
	}
	for v, c := range vc {
		if c > 0 {
			p.stats.Verdicts[v].Add(c)
		}
	}
	return n, nil
}

// strip removes the XDP program's record from the front of a received
// frame (CarrierHead, or CarrierMeta's run-time fallback) by moving the
// descriptor: no copy, and the frame can never leave with it. A head
// carrier frame without its record is dropped: its first bytes are not
// known to be the frame's.
func (w *Worker) strip(p *port, d xsk.Desc, base uint64) (xsk.Desc, bool) {
	c := w.e.cfg.Carrier
	if c == xdpprog.CarrierNone {
		return d, true
	}
	_, n, ok := c.Locate(w.e.umem.Area, d.Addr, d.Len, d.Addr-base)
	switch {
	case !ok && c == xdpprog.CarrierHead, ok && n >= d.Len:
		p.stats.Drops[DropNoRecord].Add(1)
		return d, false
	case n > 0 && c != xdpprog.CarrierHead:
		p.stats.MetaFallback.Add(1)
	}
	return xsk.Desc{Addr: d.Addr + uint64(n), Len: d.Len - n, Options: d.Options}, true
}

// completeChecksums completes the partial checksums of a batch (see
// packet.CompletePartial), counted per port.
func (w *Worker) completeChecksums(p *port, pkts []Packet) {
	if w.e.cfg.NoChecksumCompletion {
		return
	}
	var n uint64
	for i := range pkts {
		if w.parsed.Parse(pkts[i].Data) == nil && packet.CompletePartial(&w.parsed, pkts[i].Data) {
			n++
		}
	}
	if n > 0 {
		p.stats.ChecksumsCompleted.Add(n)
	}
}

// transmit puts the queued frames on TX and kicks the kernel until the ring
// is drained or it says "later".
func (w *Worker) transmit(p *port) (int, error) {
	if w.e.down[p.side].Load() {
		// Link down: nothing goes on its TX, and no kick (it would fail).
		if len(p.txq) > 0 {
			w.dropTx(p, p.txq, DropLinkDown)
			p.txq = p.txq[:0]
		}
		return 0, nil
	}
	moved := 0
	kicked := false // whether what is on TX was kicked since it was put there
	q := p.txq
	for off := 0; off < len(q); {
		chunk := q[off:min(len(q), off+w.batch)]
		off += len(chunk)
		if w.check != nil {
			disp := w.disp[:len(chunk)]
			clear(disp)
			w.check.PostTx(p.side, chunk, disp)
			chunk = chunk[:keepOnly(w, p, chunk, disp)]
		}
		idx, n, err := p.tx.Reserve(uint32(len(chunk)))
		if err != nil {
			return moved, err
		}
		var bytes uint64
		for i := uint32(0); i < n; i++ {
			*p.tx.Slot(idx + i) = chunk[i]
			bytes += uint64(chunk[i].Len)
		}
		p.tx.Submit()
		kicked = n == 0 && kicked
		p.txOut += int(n)
		p.stats.TxPackets.Add(uint64(n))
		p.stats.TxBytes.Add(bytes)
		moved += int(n)
		if w.inject > 0 && n > 0 {
			w.injectFillWhileTx(p, chunk[n-1])
		}
		if int(n) < len(chunk) {
			// No room: the kernel is behind. Dropping here bounds the
			// queue; the sender's congestion control sees it as loss.
			w.dropTx(p, chunk[n:], DropTxRingFull)
			w.dropTx(p, q[off:], DropTxRingFull)
			break
		}
		if w.deferKick && p.tx.Outstanding() < w.kickAt(p) {
			continue
		}
		w.kick(p)
		kicked = true
	}
	p.txq = p.txq[:0]
	if !kicked && !w.deferKick && p.tx.Outstanding() > 0 {
		w.kick(p)
	}
	return moved, nil
}

// kickIdle is how many loops in a row without RX end a deferred kick.
const kickIdle = 8

// kickAt is how many frames on TX are worth a deferred kick: what one
// sendto moves, at most a batch.
func (w *Worker) kickAt(p *port) uint32 {
	return min(p.TxBatch(), uint32(w.batch))
}

func (w *Worker) dropTx(p *port, descs []xsk.Desc, why DropReason) {
	for _, d := range descs {
		base, _ := w.e.umem.Chunk(d.Addr)
		w.free = append(w.free, base)
	}
	p.stats.Drops[why].Add(uint64(len(descs)))
}

// kick wakes the kernel's TX until the ring is drained. In copy mode each
// sendto moves at most TxBatch descriptors and says EAGAIN while more wait,
// so EAGAIN alone is no reason to stop: kick again as long as the kernel's
// consumer index advances, and stop at the first kick that moved nothing
// (COMPLETION full, the device busy, or a zero-copy driver that transmits
// later from its NAPI): the rest waits for the next iteration.
func (w *Worker) kick(p *port) {
	if !p.tx.NeedWakeup() {
		return
	}
	for out := p.tx.Outstanding(); out > 0; {
		p.stats.Kicks.Add(1)
		switch e := p.Kick(); e {
		case 0:
		case unix.EAGAIN:
			p.stats.KickAgain.Add(1)
		case unix.EBUSY:
			p.stats.KickBusy.Add(1)
		default:
			p.stats.KickErrors.Add(1)
			return
		}
		left := p.tx.Outstanding()
		if left >= out {
			p.stats.KickStalled.Add(1)
			return
		}
		out = left
	}
}

// sleep waits for RX in poll(2) when the ports are sockets, else briefly.
// With transmissions outstanding it wakes soon to collect completions.
func (w *Worker) sleep() {
	timeout := 50
	if w.txWaiting() > 0 {
		timeout = 1
	}
	w.ports[0].stats.Wakeups.Add(1)
	for i := range w.ports {
		// A driver may have run dry after the last refill looked at its flag.
		w.wakeFill(&w.ports[i])
		// Nothing deferred sleeps on TX (SpinIdle may be below kickIdle).
		if w.ports[i].tx.Outstanding() > 0 {
			w.kick(&w.ports[i])
		}
	}
	if w.pfds != nil {
		w.pfds[0].Revents, w.pfds[1].Revents = 0, 0
		unix.Poll(w.pfds, timeout)
		return
	}
	time.Sleep(time.Duration(timeout) * 20 * time.Microsecond)
}

// Prime posts every worker's FILL rings before anything can arrive, so the
// first frames after the program is attached find buffers. Call it before
// Start.
func (e *Engine) Prime() {
	for _, w := range e.workers {
		for i := range w.ports {
			for w.ports[i].fillOut < w.target && len(w.free) > 0 {
				before := w.ports[i].fillOut
				if err := w.refill(&w.ports[i]); err != nil || w.ports[i].fillOut == before {
					break
				}
			}
		}
		w.publish()
	}
}

// injectFillWhileTx is the planted bug of Config.InjectFillWhileTx: post a
// frame that is on p's TX ring to the other port's FILL ring.
func (w *Worker) injectFillWhileTx(p *port, d xsk.Desc) {
	// xorshift: deterministic per worker, no allocation, no lock.
	w.injectRand ^= w.injectRand << 13
	w.injectRand ^= w.injectRand >> 7
	w.injectRand ^= w.injectRand << 17
	if float64(w.injectRand>>11)/(1<<53) >= w.inject {
		return
	}
	o := &w.ports[p.side.Other()]
	base, _ := w.e.umem.Chunk(d.Addr)
	addr := [1]uint64{base}
	if w.check != nil {
		disp := w.disp[:1]
		clear(disp)
		if w.check.PostFill(o.side, addr[:], disp) > 0 {
			// Caught before the hand-over: the frame stays on TX only.
			return
		}
	}
	idx, n, err := o.fill.Reserve(1)
	if err != nil || n == 0 {
		return
	}
	*o.fill.Slot(idx) = base
	o.fill.Submit()
	o.fillOut++ // the accounting now counts this frame twice: the bug
}

// keepOnly compacts the entries the Checker kept to the front of v and
// returns how many there are. Vetoed frames are quarantined, never posted:
// a frame refused on its way into a ring is already suspect.
func keepOnly[T any](w *Worker, p *port, v []T, disp []Disposition) int {
	k := 0
	for i := range v {
		if disp[i] == Keep {
			v[k] = v[i]
			k++
			continue
		}
		w.quar++
		p.stats.Drops[DropViolation].Add(1)
	}
	return k
}
