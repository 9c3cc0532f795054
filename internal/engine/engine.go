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
	FillTarget uint32 // frames kept posted on each FILL ring (default: 7/16 of the worker's share, at most the ring size)
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

// Thread is the id of the OS thread running w's loop, 0 when it is not
// running (a benchmark puts it under a CPU limit).
func (w *Worker) Thread() int { return int(w.tid.Load()) }

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
	fillWoken      bool       // woken since FILL was last posted to (wake.go)
	txCsum         bool       // can ask the kernel to complete a checksum (checksum.go)
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

	txCsum    bool      // a port can ask the kernel to complete checksums
	offloaded [2]uint64 // ChecksumsOffloaded not yet published, by side

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
	tid        atomic.Int32 // the OS thread running the loop (0: not running)
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
		if c, ok := pp.(txChecksummer); ok && c.TxChecksum() {
			pt.txCsum = true
			w.txCsum = true
		}
		w.ports[s] = pt
	}
	w.target = int(e.cfg.FillTarget)
	if w.target == 0 {
		// Post all but an eighth of the share (at least two batches) to
		// the two FILL rings. Only frames on FILL absorb a burst: the
		// kernel drops what arrives while FILL is empty (rx_dropped),
		// however many frames wait on the free list. What is kept free
		// covers frames in flight on TX and COMPLETION and the
		// Inspector's spare frames (refused below a batch free). Half the
		// share on FILL (the previous default) let a single iperf3 stream
		// through the lab lose 1.5-2% of its frames at outer while 2048
		// frames sat free; with 7/16 of it per ring, 0.1-0.35%.
		w.target = (int(n) - max(int(n)/8, 2*e.cfg.Batch)) / 2
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
	w.tid.Store(int32(unix.Gettid()))
	defer w.tid.Store(0)
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
	if w.deferKick {
		// A loop that left frames on TX for a later kick is not idle:
		// callers that stop or sleep after an idle loop must not strand
		// them (the kick comes within kickIdle loops).
		for i := range w.ports {
			if w.ports[i].tx.Outstanding() > 0 {
				work++
				break
			}
		}
	}
	if work == 0 && w.check != nil {
		w.check.Idle()
	}
	w.publish()
	return work, nil
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
