// Package gate assembles xskgate's data path on two real interfaces: one
// UMEM, a socket per queue on outer and inner, the XDP program on both, and
// the engine's workers. It owns the order of setup and teardown, which the
// kernel makes matter:
//
//	setup:    UMEM → sockets (each with its FILL/COMPLETION) → FILL primed
//	          → XSKMAP entries → program attached → workers started
//	teardown: program detached → integrity checks closed → workers drained
//	          → sockets → UMEM
//
// Detaching first means no frame is redirected to a socket that is going
// away; priming FILL before attaching means the first frames find buffers.
package gate

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/ethtool"
	"github.com/xskgate/xskgate/internal/integrity"
	"github.com/xskgate/xskgate/internal/xdpprog"
	"github.com/xskgate/xskgate/internal/xsk"
)

// Config is what the daemon needs to open the gate.
type Config struct {
	Outer, Inner string // interface names
	Queues       int    // queue pairs to serve: 0 or the RX queue count, else refused (queues.go)
	Umem         xsk.UmemConfig
	RxSize       uint32 // default 2048
	TxSize       uint32 // default 2048
	TxBudget     uint32 // XDP_MAX_TX_SKB_BUDGET where supported; 0: kernel default (32)
	XDPMode      xdpprog.Mode
	// Carrier is how the XDP program hands its record to user space. The
	// zero value, CarrierMeta, is taken as asked; CarrierAuto probes.
	Carrier xdpprog.Carrier
	// LenSkew plants a record length mismatch in every frame (tests and
	// demonstrations of the integrity checks only).
	LenSkew int32
	// FirstLine loads the outer interface's program with the in-kernel
	// first line (fed by the TCP protection: protect.Inspector.SetFirstLine),
	// its flow map sized for FirstLineFlows tracked flows (default 1<<20).
	FirstLine      bool
	FirstLineFlows int
	// FastPath offloads established flows to the kernel (xdpprog.FastPath,
	// fed by the TCP protection: protect.Inspector.SetFastPath), with room
	// for FastPathFlows flows (default xdpprog.DefaultFastFlows). A kernel
	// without tcx (Linux 6.6+) runs without it, and the gate says so.
	FastPath      bool
	FastPathFlows int
	Engine        engine.Config
	// SoftwareChecksums completes partial checksums in software even where
	// the kernel could at TX (engine/checksum.go): for comparisons, and
	// for a device whose checksum offload is suspect.
	SoftwareChecksums bool
	// Integrity, when set, checks every ring hand-over (package integrity).
	Integrity *integrity.Config
	Drain     time.Duration // how long Close waits for TX completions (default 1s)
	Logger    *slog.Logger
}

// Gate is an open gate. Open it on a thread in the interfaces' network
// namespace; afterwards it can be used from anywhere.
type Gate struct {
	cfg    Config
	Umem   *xsk.Umem
	Outer  []*xsk.Socket
	Inner  []*xsk.Socket
	Engine *engine.Engine
	Checks *integrity.Checks // nil when Config.Integrity was nil
	progs  []*xdpprog.Program
	atts   []*xdpprog.Attachment
	fast   *xdpprog.FastPath // nil without one
	// fastWhy says why the fast path is off when it was asked for
	fastWhy string
	log     *slog.Logger

	carrier    xdpprog.Carrier
	carrierWhy string
	// ethtool is a socket made in the interfaces' namespace, to read the
	// queue counts (the link watch) and the outer driver's XDP_TX errors
	// (XDPTxErrors) from anywhere.
	ethtool *ethtool.Reader
	queues  [2]ifQueues // outer's and inner's queue counts at Open
	// bindModes is what the kernel granted each socket (XDP_OPTIONS),
	// outer's then inner's in queue order (bindmode.go).
	bindModes [2][]string
	links     *linkWatch // see links.go
}

// Open builds everything up to, but not including, starting the workers.
// On error, everything made so far is released.
func Open(cfg Config) (g *Gate, err error) {
	if cfg.RxSize == 0 {
		cfg.RxSize = 2048
	}
	if cfg.TxSize == 0 {
		cfg.TxSize = 2048
	}
	if cfg.Drain == 0 {
		cfg.Drain = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Outer == "" || cfg.Inner == "" || cfg.Outer == cfg.Inner {
		return nil, fmt.Errorf("need two different interfaces, got outer %q and inner %q", cfg.Outer, cfg.Inner)
	}
	outer, err := net.InterfaceByName(cfg.Outer)
	if err != nil {
		return nil, fmt.Errorf("outer interface %q not found: check the name with `ip link` (in the right network namespace)", cfg.Outer)
	}
	inner, err := net.InterfaceByName(cfg.Inner)
	if err != nil {
		return nil, fmt.Errorf("inner interface %q not found: check the name with `ip link` (in the right network namespace)", cfg.Inner)
	}
	if err := xdpprog.Supported(); err != nil {
		return nil, err
	}
	carrier, why, err := xdpprog.ChooseCarrier(cfg.Carrier)
	if err != nil {
		return nil, err
	}
	// The gate's one ethtool socket, in the interfaces' namespace: the
	// queue counts here and in the link watch, the first line's XDP_TX
	// errors.
	et, err := ethtool.Open()
	if err != nil {
		return nil, err
	}
	// Every RX queue of both interfaces is served, or the gate refuses to
	// start (queues.go): a frame on an unserved queue would bypass it.
	qo, err1 := readQueues(et, cfg.Outer, cfg.Logger)
	qi, err2 := readQueues(et, cfg.Inner, cfg.Logger)
	if err = errors.Join(err1, err2); err == nil {
		cfg.Queues, err = planQueues(cfg.Queues, qo, qi)
	}
	if err != nil {
		et.Close()
		return nil, err
	}
	g = &Gate{cfg: cfg, log: cfg.Logger, carrier: carrier, carrierWhy: why, queues: [2]ifQueues{qo, qi}, ethtool: et}
	cfg.Engine.Carrier = carrier
	// On error, release what was made: the deferred call sees g already
	// set to the nil it returns, so it closes this copy.
	opened := g
	defer func() {
		if err != nil {
			opened.Close()
			g = nil
		}
	}()
	// Partial checksums are left to the kernel where it can complete them
	// (engine/checksum.go): that needs a TX metadata area in the UMEM.
	cfg.Umem.TxMetadata = !cfg.Engine.NoChecksumCompletion && !cfg.SoftwareChecksums
	if g.Umem, err = xsk.NewUmem(cfg.Umem); err != nil {
		return nil, err
	}
	sc := xsk.SocketConfig{RxSize: cfg.RxSize, TxSize: cfg.TxSize, TxBudget: cfg.TxBudget}
	var pairs []engine.Pair
	for q := 0; q < cfg.Queues; q++ {
		sc.Queue = q
		sc.Ifindex = outer.Index
		o, err := g.Umem.Open(sc)
		if err != nil {
			return nil, err
		}
		g.Outer = append(g.Outer, o)
		sc.Ifindex = inner.Index
		i, err := g.Umem.Open(sc)
		if err != nil {
			return nil, err
		}
		g.Inner = append(g.Inner, i)
		pairs = append(pairs, engine.Pair{Outer: o, Inner: i})
	}
	if cfg.Engine.Logger == nil {
		cfg.Engine.Logger = cfg.Logger
	}
	zeroCopy := g.readBindModes()
	g.logTxChecksum()
	if cfg.Integrity != nil {
		ic := *cfg.Integrity
		if ic.Logger == nil {
			ic.Logger = cfg.Logger
		}
		// What the kernel granted, not what was asked: the checks read
		// each socket's mode (XDP_OPTIONS) themselves; ZeroCopy makes the
		// order check unavailable, since it is one switch for all.
		ic.ZeroCopy = zeroCopy
		if ic.RxOffset == 0 {
			// Copy mode puts every received frame at headroom + 256 in
			// its chunk; on a zero-copy socket the checks ignore it
			// (the driver only guarantees >= headroom).
			ic.RxOffset = g.Umem.RxOffset()
		}
		if ic.ZeroCopy && ic.Order {
			g.log.Info("zero-copy sockets: FILL->RX order check off for good (drivers hand out recycled buffers first)")
		}
		if cfg.XDPMode == xdpprog.ModeGeneric {
			ic.NoSeqOrder = true
		}
		ic.Carrier = carrier
		if g.Checks, err = integrity.New(g.Umem, ic); err != nil {
			return nil, err
		}
		cfg.Engine.NewChecker = g.Checks.NewChecker
	}
	if g.Engine, err = engine.New(g.Umem, pairs, cfg.Engine); err != nil {
		return nil, err
	}
	g.Engine.Prime()
	if cfg.FastPath {
		// Before the XDP programs, which share its map; its tc program
		// drops what XDP passes for a flow not in the map, so attaching
		// it first loses nothing the stack would have forwarded.
		g.fast, g.fastWhy = openFastPath(outer.Index, inner.Index, cfg.FastPathFlows)
		if g.fast == nil {
			g.log.Warn("fast path off: established flows stay on AF_XDP", "why", g.fastWhy)
		}
	}
	for _, side := range []struct {
		ifi   *net.Interface
		socks []*xsk.Socket
		first bool
		inner bool
	}{{outer, g.Outer, cfg.FirstLine, false}, {inner, g.Inner, false, true}} {
		p, err := xdpprog.Load(len(side.socks), xdpprog.Options{Carrier: carrier, LenSkew: cfg.LenSkew,
			FirstLine: side.first, Flows: cfg.FirstLineFlows, Fast: g.fast, FastInner: side.inner})
		if err != nil {
			return nil, err
		}
		g.progs = append(g.progs, p)
		for q, s := range side.socks {
			if err := p.Register(q, s.FD()); err != nil {
				return nil, err
			}
		}
		a, err := p.Attach(side.ifi.Index, cfg.XDPMode)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", side.ifi.Name, err)
		}
		g.atts = append(g.atts, a)
	}
	// Watch both links from now on: the namespace is this thread's.
	if g.links, err = newLinkWatch(g.Engine, g.log, g.queues, g.ethtool); err != nil {
		return nil, err
	}
	if g.fast != nil {
		g.log.Info("fast path on: established flows cross in the kernel (XDP_PASS, then a tc redirect)", "flows", g.fast.Capacity())
	}
	g.log.Info("gate open", "outer", cfg.Outer, "inner", cfg.Inner, "queues", cfg.Queues,
		"frames", g.Umem.NumFrames(), "frame_size", g.Umem.FrameSize(), "xdp_mode", cfg.XDPMode, "bind_mode_asked", cfg.Umem.Mode)
	if cfg.XDPMode == xdpprog.ModeGeneric {
		g.log.Warn("generic XDP: frames larger than a UMEM frame or than the other side's MTU (GRO/GSO aggregates) cannot cross AF_XDP: the kernel drops them (rx_dropped) or the other side refuses them (EBUSY). Use native mode, or turn GRO off on these interfaces and TSO/GSO off on their neighbours")
	}
	switch carrier {
	case xdpprog.CarrierNone:
		g.log.Warn("xdp record carrier: none: the XDP-length check and metadata sequence are off", "why", why)
	default:
		g.log.Info("xdp record carrier: "+carrier.String(), "why", why)
	}
	return g, nil
}

// XDPTxErrors returns the outer driver's count of frames an XDP program
// sent back with XDP_TX that it failed to transmit (ethtool statistics
// named *xdp_tx_err*, summed), and whether the driver reports one. A veth
// whose peer has neither an XDP program nor GRO on drops every XDP_TX: a
// first line that answers SYNs must notice and stop. Safe from one
// goroutine at a time (the first line's controller).
func (g *Gate) XDPTxErrors() (uint64, bool) {
	if g.ethtool == nil {
		return 0, false // closed
	}
	n, found, err := g.ethtool.Sum(g.cfg.Outer, func(name string) bool { return strings.Contains(name, "xdp_tx_err") })
	if err != nil {
		return 0, false
	}
	return n, found
}

// FirstLine returns the outer program's first line, nil without one.
func (g *Gate) FirstLine() *xdpprog.FirstLine {
	if len(g.progs) == 0 {
		return nil
	}
	return g.progs[0].FirstLine()
}

// FastPath returns the kernel fast path, nil without one; why says why it
// is off when Config.FastPath asked for it.
func (g *Gate) FastPath() (fp *xdpprog.FastPath, why string) { return g.fast, g.fastWhy }

// openFastPath loads and attaches the fast path, or says why it cannot.
func openFastPath(outer, inner, flows int) (*xdpprog.FastPath, string) {
	fp, err := xdpprog.LoadFastPath(outer, inner, flows)
	if err == nil {
		if err = fp.Attach(outer, inner); err != nil {
			fp.Close()
		}
	}
	if err != nil {
		return nil, err.Error()
	}
	return fp, ""
}

// Carrier returns how the XDP program hands its record to user space, and
// why that one was chosen.
func (g *Gate) Carrier() (xdpprog.Carrier, string) { return g.carrier, g.carrierWhy }

// Start runs the workers and the watch of both links.
func (g *Gate) Start() {
	g.Engine.Start()
	g.links.start()
}

// Programs returns the XDP programs, outer first.
func (g *Gate) Programs() []*xdpprog.Program { return g.progs }

// Close detaches the programs, drains and stops the workers, then closes
// sockets and the UMEM. It is safe on a partly opened gate and idempotent.
func (g *Gate) Close() error {
	var errs []error
	if g.links != nil {
		g.links.close() // the links' down flags stay set for the drain
	}
	for _, a := range g.atts {
		if err := a.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	g.atts = nil
	// Close the checks before stopping the workers: it releases a worker
	// frozen by the freeze policy, which Stop would otherwise wait for.
	if g.Checks != nil {
		if err := g.Checks.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if g.Engine != nil {
		if err := g.Engine.Stop(g.cfg.Drain); err != nil {
			errs = append(errs, err)
		}
		if a := g.Engine.Accounting(); !a.Balanced() {
			errs = append(errs, fmt.Errorf("frame accounting does not balance at shutdown: %+v", a))
		}
	}
	for _, p := range g.progs {
		if err := p.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	g.progs = nil
	// After the XDP programs: while they were attached, a flow they passed
	// to the stack needed the tc redirect.
	if g.fast != nil {
		if err := g.fast.Close(); err != nil {
			errs = append(errs, err)
		}
		g.fast = nil
	}
	if g.ethtool != nil {
		g.ethtool.Close()
		g.ethtool = nil
	}
	if g.Umem != nil {
		if err := g.Umem.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
