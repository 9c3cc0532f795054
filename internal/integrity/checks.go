package integrity

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/flightrec"
	"github.com/xskgate/xskgate/internal/pcapng"
	"github.com/xskgate/xskgate/internal/xdpprog"
	"github.com/xskgate/xskgate/internal/xsk"
)

// Config selects the checks and what happens on a violation.
type Config struct {
	// Each check group; DefaultConfig turns all of them on. SetEnabled
	// changes them at run time.
	Ownership, Order, Poison, Bounds, Metadata, IPLength bool

	Policy Policy
	// DumpDir receives flight recorder dumps, the pcapng capture of
	// violating frames and the frozen ftrace buffer; files are 0600 in a
	// 0700 directory. "" writes no file.
	DumpDir string
	// MaxBytes caps the evidence files in DumpDir (those earlier runs left
	// there count too): a file or frame that would go over it is not
	// written, only counted (Evidence), and the first refusal is logged.
	// 0: DefaultMaxBytes.
	MaxBytes int64
	// CaptureRate and CaptureBurst are each violation class's token bucket
	// for pcapng frames (frames a second, and how many may come at once);
	// frames over it are counted, not captured. Flight recorder dumps are
	// taken at most once a second. 0: DefaultCaptureRate and
	// DefaultCaptureBurst.
	CaptureRate  float64
	CaptureBurst int
	// RecorderSize is the flight recorder depth per socket, in events
	// (default 4096).
	RecorderSize int
	// Ftrace mirrors each violation into a private ftrace instance
	// (flightrec.Tracer, needs root and tracefs) and freezes it on the
	// first one, keeping the kernel's xdp:* events around it. Only
	// violations are mirrored: a marker write costs about 2.5 µs.
	Ftrace bool
	// RxOffset is the offset of every RX address in its chunk: in copy mode
	// UMEM headroom + 256 (xsk.Umem.RxOffset). 0 checks only that the frame
	// fits its chunk (zero-copy guarantees no more).
	RxOffset uint64
	// ZeroCopy says the sockets are bound in zero-copy mode (XDP_OPTIONS).
	// A zero-copy driver hands out buffers recycled into its pool (frames
	// its XDP program dropped, or that found the RX ring full) before new
	// FILL entries, so RX need not follow FILL order: the order check is
	// off for good (SetEnabled cannot turn it on, Unavailable says why),
	// and a chunk received out of FILL order simply leaves the FILL set.
	ZeroCopy bool
	// TxAgeLimit is how long a TX entry may wait for its completion
	// while the kernel completes other entries of its socket (or has
	// taken every entry off the TX ring): past it the entry is reported
	// once (tx_overdue). Swept every TxAgeLimit/2, not per packet, so an
	// entry is reported between 1 and 1.5 limits after it was posted.
	// 0: DefaultTxAgeLimit; negative: never.
	TxAgeLimit time.Duration
	// NoSeqOrder drops the rule that the XDP metadata sequence of a queue
	// only grows. It holds in native XDP, where NAPI serialises a queue;
	// generic XDP runs the program on whichever CPU received the skb and
	// orders the RX ring by lock acquisition, so a sequence there may
	// legitimately arrive out of order. The gate sets it for generic mode.
	NoSeqOrder bool
	// Carrier is how the XDP program hands its record (the length it saw,
	// the queue, a sequence) to user space. CarrierNone turns the
	// metadata checks off: there is nothing to compare.
	Carrier xdpprog.Carrier
	Logger  *slog.Logger
}

// DefaultConfig has every check on, Policy Drop, 4096 events per socket and
// the default evidence limits.
// RxOffset and DumpDir are deployment specific and left empty.
func DefaultConfig() Config {
	return Config{Ownership: true, Order: true, Poison: true, Bounds: true, Metadata: true, IPLength: true,
		Policy: Drop, RecorderSize: flightrec.DefaultSize,
		MaxBytes: DefaultMaxBytes, CaptureRate: DefaultCaptureRate, CaptureBurst: DefaultCaptureBurst}
}

// DefaultTxAgeLimit is Config.TxAgeLimit's default: far beyond any
// completion delay of a working device (copy mode completes in sendto on
// veth; NICs within microseconds to milliseconds).
const DefaultTxAgeLimit = 5 * time.Second

// MaxViolations bounds the list Violations returns: the first ones are the
// ones that explain the rest.
const MaxViolations = 256

// logBurst is how many violation log lines a second may carry; the rest are
// counted and summarised, so a fault storm cannot flood the log.
const logBurst = 20

// Checks holds what the checkers of one gate share: the configuration,
// counters, the first violations, the flight recorders and the evidence
// files. Create one per UMEM with New and give NewChecker to the engine.
type Checks struct {
	umem    *xsk.Umem
	cfg     Config
	log     *slog.Logger
	size    uint64 // UMEM bytes
	fs      uint64 // chunk size, a power of two
	shift   uint   // log2(fs): chunk index = address >> shift
	txMeta  uint64 // TX metadata bytes the kernel wants before each TX frame
	nframes uint32

	enabled  atomic.Uint32 // bit per Check
	counts   [NumClasses]atomic.Uint64
	lost     atomic.Uint64 // FILL entries the kernel consumed and never returned
	checkers atomic.Int32  // NewChecker calls: the engine's worker count
	gaps     atomic.Uint64 // metadata sequence gaps, all sockets
	kdrops   atomic.Uint64 // rx_dropped + rx_ring_full growth, all sockets
	mismatch atomic.Uint64 // gaps the kernel counters do not explain
	// sweepEvery is the TX age sweep interval in flight recorder time
	// (nanoseconds): half Config.TxAgeLimit.
	sweepEvery int64

	mu         sync.Mutex
	ev         budget // evidence limits; see evidence.go
	capLogged  bool
	recs       []*flightrec.Recorder
	viols      []Violation
	nviol      uint64
	lastDump   time.Time
	dumps      []string
	dumpErrs   int
	pcap       *pcapng.Writer
	pcapErr    bool
	tracer     *flightrec.Tracer
	traceSaved bool
	logSec     int64
	logN       int
	logSkipped int
	thaw       chan struct{}
	frozen     int
	closed     bool
}

// New prepares the checks for umem.
func New(umem *xsk.Umem, cfg Config) (*Checks, error) {
	if umem == nil {
		return nil, errors.New("integrity: nil UMEM")
	}
	if cfg.RecorderSize <= 0 {
		cfg.RecorderSize = flightrec.DefaultSize
	}
	if cfg.Policy > Panic {
		return nil, fmt.Errorf("integrity: unknown policy %d", cfg.Policy)
	}
	fs := uint64(umem.FrameSize())
	if fs&(fs-1) != 0 {
		// Unaligned chunks key frames differently (base + offset in the
		// top bits); the state array below assumes aligned chunks.
		return nil, fmt.Errorf("integrity: frame size %d: only aligned (power of two) chunks are supported", fs)
	}
	if cfg.RxOffset >= fs {
		return nil, fmt.Errorf("integrity: RX offset %d does not fit a %d-byte chunk", cfg.RxOffset, fs)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.CaptureRate == 0 {
		cfg.CaptureRate = DefaultCaptureRate
	}
	if cfg.CaptureBurst == 0 {
		cfg.CaptureBurst = DefaultCaptureBurst
	}
	if cfg.MaxBytes < 0 || cfg.CaptureRate < 0 || cfg.CaptureBurst < 0 {
		return nil, fmt.Errorf("integrity: evidence limits must not be negative (max bytes %d, capture rate %g, burst %d)",
			cfg.MaxBytes, cfg.CaptureRate, cfg.CaptureBurst)
	}
	if cfg.ZeroCopy {
		cfg.Order = false // see Unavailable
	}
	if cfg.TxAgeLimit == 0 {
		cfg.TxAgeLimit = DefaultTxAgeLimit
	}
	c := &Checks{umem: umem, cfg: cfg, log: cfg.Logger, size: uint64(umem.NumFrames()) * fs, fs: fs, shift: uint(bits.TrailingZeros64(fs)),
		nframes: umem.NumFrames(), txMeta: uint64(umem.TxMetadataLen()), thaw: make(chan struct{}), sweepEvery: int64(cfg.TxAgeLimit / 2)}
	if cfg.TxAgeLimit < 0 {
		c.sweepEvery = math.MaxInt64
	}
	c.ev.init(cfg)
	if cfg.DumpDir != "" {
		n, err := existingEvidence(cfg.DumpDir)
		if err != nil {
			return nil, fmt.Errorf("integrity: read evidence directory: %w (check integrity.dump_dir)", err)
		}
		c.ev.add(n)
		if n > 0 {
			c.log.Info("integrity evidence directory holds earlier evidence; it counts against the cap",
				"dir", cfg.DumpDir, "bytes", n, "max_bytes", cfg.MaxBytes)
		}
	}
	for i, on := range []bool{cfg.Ownership, cfg.Order, cfg.Poison, cfg.Bounds, cfg.Metadata, cfg.IPLength} {
		c.SetEnabled(Check(i), on)
	}
	if cfg.Ftrace {
		t, err := flightrec.OpenTracer(strconv.Itoa(os.Getpid()))
		if err != nil {
			return nil, fmt.Errorf("integrity: open ftrace instance: %w", err)
		}
		c.tracer = t
	}
	return c, nil
}

// SetEnabled switches one check on or off for every worker. Workers see the
// change at their next batch. A disabled check reports nothing and drops
// nothing; the ownership state is still tracked, so turning a check back on
// needs no resynchronisation. A check Unavailable in this configuration
// stays off.
func (c *Checks) SetEnabled(check Check, on bool) {
	if check >= NumChecks {
		return
	}
	on = on && c.Unavailable(check) == ""
	bit := uint32(1) << check
	for {
		old := c.enabled.Load()
		v := old &^ bit
		if on {
			v |= bit
		}
		if c.enabled.CompareAndSwap(old, v) {
			return
		}
	}
}

// Unavailable says why check cannot be on in this configuration, "" if it
// can: the order check with sockets bound in zero-copy mode.
func (c *Checks) Unavailable(check Check) string {
	if check == CheckOrder && c.cfg.ZeroCopy {
		return "the sockets are bound in zero-copy mode, whose drivers hand out recycled buffers before FILL entries: RX need not follow FILL order"
	}
	return ""
}

// Enabled reports whether check is on.
func (c *Checks) Enabled(check Check) bool { return c.enabled.Load()&(1<<check) != 0 }

// Counts returns the violations seen so far per class (IPLength counts
// malformed packets, not descriptor faults).
func (c *Checks) Counts() [NumClasses]uint64 {
	var out [NumClasses]uint64
	for i := range out {
		out[i] = c.counts[i].Load()
	}
	return out
}

// Stats are the checks' counters beyond the violation classes.
type Stats struct {
	Lost        uint64 // FILL entries the kernel consumed without producing them on RX
	SeqGaps     uint64 // frames missing from the metadata sequence (all sockets)
	KernelDrops uint64 // rx_dropped + rx_ring_full growth over the same time
	Unexplained uint64 // gaps the kernel counters do not account for
	Frozen      int    // workers blocked by the Freeze policy now
	Dumps       int    // flight recorder dumps written
}

// Stats returns the counters; the reconciliation ones move about once a
// second per idle worker.
func (c *Checks) Stats() Stats {
	c.mu.Lock()
	frozen, dumps := c.frozen, len(c.dumps)
	c.mu.Unlock()
	return Stats{Lost: c.lost.Load(), SeqGaps: c.gaps.Load(), KernelDrops: c.kdrops.Load(),
		Unexplained: c.mismatch.Load(), Frozen: frozen, Dumps: dumps}
}

// Violations returns the first MaxViolations violations, oldest first.
func (c *Checks) Violations() []Violation {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Violation(nil), c.viols...)
}

// Dumps returns the paths of the flight recorder dumps written so far.
func (c *Checks) Dumps() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.dumps...)
}

// CapturePath returns the pcapng file of violating frames, "" if none was
// written yet.
func (c *Checks) CapturePath() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pcap == nil {
		return ""
	}
	return c.pcap.Path()
}

// Recorders returns every socket's flight recorder, in NewChecker order
// (outer then inner).
func (c *Checks) Recorders() []*flightrec.Recorder {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*flightrec.Recorder(nil), c.recs...)
}

// DumpNow writes all flight recorders, merged, to a new file in DumpDir,
// for the control socket. It is safe while workers run. A dump that would
// take the evidence over Config.MaxBytes is not written (ErrEvidenceCap).
func (c *Checks) DumpNow(reason string) (path string, err error) {
	if c.cfg.DumpDir == "" {
		return "", errors.New("integrity: no dump directory configured")
	}
	return c.dump(reason, c.Recorders())
}

// Unfreeze releases the workers the Freeze policy blocked. They return the
// dispositions of the batch that froze them and carry on; a later violation
// freezes them again.
func (c *Checks) Unfreeze() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	close(c.thaw)
	c.thaw = make(chan struct{})
}

// Close releases frozen workers for good (Freeze stops blocking), closes
// the pcapng capture and the ftrace instance, after saving the latter to
// DumpDir if it was frozen. Call it before engine.Stop when the policy is
// Freeze, or Stop waits for the frozen worker forever.
func (c *Checks) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.thaw)
	pc, tr := c.pcap, c.tracer
	c.mu.Unlock()
	var errs []error
	if pc != nil {
		errs = append(errs, pc.Close())
	}
	if tr != nil {
		errs = append(errs, c.saveTrace(), tr.Close())
	}
	return errors.Join(errs...)
}

// register adds a socket's recorder to those dumped.
func (c *Checks) register(r *flightrec.Recorder) {
	c.mu.Lock()
	c.recs = append(c.recs, r)
	c.mu.Unlock()
}

// freeze blocks the calling worker until Unfreeze or Close.
func (c *Checks) freeze(worker int) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	ch := c.thaw
	c.frozen++
	c.mu.Unlock()
	c.log.Error("integrity: worker frozen by policy; Unfreeze or Close releases it", "worker", worker)
	<-ch
	c.mu.Lock()
	c.frozen--
	c.mu.Unlock()
}

// NewChecker returns worker's checker; pass it as engine.Config.NewChecker.
// The engine calls it for every worker, in order, before any worker runs,
// and splits the UMEM into equal shares in that order: the checker derives
// the worker's share the same way on its first call.
func (c *Checks) NewChecker(worker int, outer, inner engine.Port) engine.Checker {
	c.checkers.Add(1)
	k := &Checker{c: c, worker: worker}
	for i, p := range [2]engine.Port{outer, inner} {
		k.socks[i].init(c, engine.Side(i), p)
		c.register(k.socks[i].rec)
	}
	return k
}

func hex(v uint64) string { return "0x" + strconv.FormatUint(v, 16) }

// Violation is one integrity violation, as reported and kept.
type Violation struct {
	Class  Class
	Worker int
	Iface  string // interface name of the socket
	Queue  int
	Ring   xsk.Kind
	Slot   uint32 // free-running ring index of the entry (RX, COMP); FILL/TX: 0
	Addr   uint64 // address as found in the entry
	Len    uint32 // descriptor length (RX, TX)
	// Expected and Got depend on the class: the next FILL chunk and the
	// received one (order, ownership on RX), metadata vs descriptor length,
	// last vs new sequence number, limit vs value (bounds).
	Expected, Got uint64
	Detail        string
	Batch         uint64 // the checker's hook call number
	Time          time.Time
}

// String is a one-line summary.
func (v Violation) String() string {
	return fmt.Sprintf("%s: worker %d %s/q%d %s[%d] addr=%#x len=%d expected=%#x got=%#x batch=%d: %s",
		v.Class, v.Worker, v.Iface, v.Queue, v.Ring, v.Slot, v.Addr, v.Len, v.Expected, v.Got, v.Batch, v.Detail)
}
