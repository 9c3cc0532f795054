package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/config"
	"github.com/xskgate/xskgate/internal/control"
	"github.com/xskgate/xskgate/internal/gate"
	"github.com/xskgate/xskgate/internal/integrity"
	"github.com/xskgate/xskgate/internal/metrics"
	"github.com/xskgate/xskgate/internal/protect"
)

// runFlags are the command-line overrides of the config file.
type runFlags struct {
	fs                         *flag.FlagSet
	config, outer, inner       string
	xdpMode, bindMode, cpus    string
	carrier                    string
	metrics, control, logLevel string
	queues, frames, frameSize  int
	rx, tx, txBudget, batch    int
	inject                     float64
}

// newRunFlags defines run's flags.
func newRunFlags() *runFlags {
	f := &runFlags{fs: newFlags("run", "[--config FILE] [--outer IF --inner IF] [flags]",
		`Runs the gate daemon: every frame arriving on --outer (Internet side) or --inner
(protected side) is received through AF_XDP, inspected, and forwarded to the other
interface from the same UMEM frame (or bounced, or dropped). Flags given override the
config file; the defaults shown are the built-in ones, which the file may change
('xskgate config check FILE' validates one). SIGINT/SIGTERM detach the XDP programs,
drain in-flight frames and exit. Run it in the interfaces' network namespace
(e.g. 'ip netns exec NS xskgate run ...').`)}
	fs := f.fs
	// Defaults shown are the built-in ones (config.Default). Only flags
	// given on the command line override the config file (load's set map),
	// so these initial values are for the help text alone.
	d := config.Default()
	fs.StringVar(&f.config, "config", "", "YAML config file (see deploy/xskgate.yaml)")
	fs.StringVar(&f.outer, "outer", d.Outer, "outer (Internet side) interface")
	fs.StringVar(&f.inner, "inner", d.Inner, "inner (protected side) interface")
	fs.IntVar(&f.queues, "queues", d.Queues, "queue pairs to serve, one worker each: 0 (the default) = all; any other count must be the interfaces' RX queue count (refused otherwise: unserved queues would bypass the gate)")
	fs.StringVar(&f.xdpMode, "xdp-mode", d.XDPMode, "XDP attach mode: native or generic")
	fs.StringVar(&f.carrier, "carrier", d.XDPCarrier, "how the XDP program hands the frame length to user space: auto, meta, head or none")
	fs.StringVar(&f.bindMode, "bind-mode", d.BindMode, "AF_XDP bind mode: auto, copy or zerocopy")
	fs.IntVar(&f.frames, "frames", int(d.UMEM.Frames), "UMEM frames")
	fs.IntVar(&f.frameSize, "frame-size", int(d.UMEM.FrameSize), "UMEM frame size (2048 or 4096)")
	fs.IntVar(&f.rx, "rx-size", int(d.Rings.RX), "RX ring entries (power of two)")
	fs.IntVar(&f.tx, "tx-size", int(d.Rings.TX), "TX ring entries (power of two)")
	fs.IntVar(&f.txBudget, "tx-budget", int(d.Rings.TxBudget), "descriptors per sendto: 0 (the default) = the kernel's 32, else 32 to --tx-size (Linux 6.17+)")
	fs.IntVar(&f.batch, "batch", d.Engine.Batch, "descriptors per ring operation")
	fs.StringVar(&f.cpus, "cpus", "", "pin workers to these CPUs, e.g. 1 or 2,3 (default: no pinning)")
	fs.StringVar(&f.metrics, "metrics", d.Metrics.Listen, `Prometheus listen address ("" disables)`)
	fs.StringVar(&f.control, "control", d.Control.Socket, "control socket path")
	fs.StringVar(&f.logLevel, "log-level", d.Log.Level, "debug, info, warn or error")
	fs.Float64Var(&f.inject, "inject", 0, "TESTING ONLY: plant the FILL-while-on-TX user bug with this probability per TX batch, to see the integrity checks catch it")
	return f
}

func cmdRun(ctx context.Context, args []string) error {
	f := newRunFlags()
	fs := f.fs
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := f.load()
	if err != nil {
		return err
	}
	log := logger(cfg.Log.Level, cfg.Log.Format == "json")
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	if err := needRoot(); err != nil {
		return err
	}
	if cfg.Outer == "" || cfg.Inner == "" {
		return errors.New("no interfaces: give --outer and --inner (or outer/inner in the config file)")
	}
	checkMemlock(log)

	// The control socket first: a second daemon stops here with a clear
	// message, before touching any interface.
	ctl, err := control.Listen(cfg.Control.Socket, log)
	if err != nil {
		return err
	}
	defer ctl.Close()

	gc := cfg.Gate()
	gc.Logger = log
	ic := cfg.IntegrityChecks()
	ic.Logger = log
	gc.Integrity = &ic
	gc.Engine.InjectFillWhileTx = f.inject
	if f.inject > 0 {
		log.Warn("planting the FILL-while-on-TX bug for demonstration", "probability_per_tx_batch", f.inject)
	}
	insp, err := protect.New(cfg.Protection, protect.Options{Logger: log})
	if err != nil {
		return err
	}
	gc.Engine.Inspector = insp
	// The in-kernel first line, fed by the protection's decisions, when
	// protection starts enabled (its flow map is sized like the flow
	// table: about 100 bytes of kernel memory per flow).
	gc.FirstLine = cfg.Protection.Enabled && cfg.Protection.FirstLine.Mode != protect.ModeDisabled
	gc.FirstLineFlows = insp.Table().Capacity()
	gc.FastPath = cfg.Protection.Enabled && cfg.Protection.FastPath.Enabled
	gc.FastPathFlows = cfg.Protection.FastPath.Flows
	g, err := gate.Open(gc)
	if err != nil {
		return err
	}
	// One protection state per worker: the queue count is known now.
	if err := insp.SetWorkers(len(g.Engine.Workers())); err != nil {
		g.Close()
		return err
	}
	if err := insp.SetFirstLine(g.FirstLine(), g.XDPTxErrors); err != nil {
		g.Close()
		return err
	}
	if fp, _ := g.FastPath(); fp != nil {
		insp.SetFastPath(fp)
	}
	if fl := g.FirstLine(); fl != nil {
		st, _ := insp.FirstLineStats()
		log.Info("first line in XDP", "stages", st.Stages, "monitor", st.Monitor)
	}
	col := metrics.NewCollector(metrics.FromGate(g))
	// Order matters: scrapes and the control socket's stats read ring
	// memory, so the collector closes and the control server has answered
	// its last request before the gate unmaps it.
	var served chan struct{} // closed when ctl.Serve returns
	defer func() {
		if served != nil {
			<-served // runCtx, cancelled first, stops it
		}
		col.Close()
		if err := g.Close(); err != nil {
			log.Error("shutdown", "err", err)
		} else {
			a := g.Engine.Accounting()
			log.Info("stopped", "frames_total", a.Total, "free", a.Free, "fill", a.Fill, "tx", a.Tx, "quarantined", a.Quarantined)
		}
	}()
	reload := func() error {
		if f.config == "" {
			return errors.New("no --config file to reload")
		}
		nc, err := f.load()
		if err != nil {
			return err
		}
		if err := insp.Reload(nc.Protection); err != nil {
			return err
		}
		ni := nc.IntegrityChecks()
		for ck, on := range map[integrity.Check]bool{integrity.CheckOwnership: ni.Ownership, integrity.CheckOrder: ni.Order,
			integrity.CheckPoison: ni.Poison, integrity.CheckBounds: ni.Bounds, integrity.CheckMetadata: ni.Metadata, integrity.CheckIPLength: ni.IPLength} {
			g.Checks.SetEnabled(ck, on)
			if why := g.Checks.Unavailable(ck); on && why != "" {
				log.Info("integrity check stays off", "check", ck.String(), "why", why)
			}
		}
		log.Info("configuration reloaded", "file", f.config)
		return nil
	}
	ctl.Handle("stats", func(context.Context, json.RawMessage) (any, error) {
		r := statsReply{Snapshot: g.Snapshot(), Violations: violationsOf(g.Checks)}
		if fl, ok := insp.FirstLineStats(); ok {
			r.FirstLine = &fl
		}
		if fp, ok := insp.FastPathStats(); ok {
			r.FastPath = &fp
		}
		return r, nil
	})
	ctl.Handle("status", func(context.Context, json.RawMessage) (any, error) { return statusOf(g, insp, cfg), nil })
	ctl.Handle("reload", func(context.Context, json.RawMessage) (any, error) { return "reloaded", reload() })
	ctl.Handle("dump", func(_ context.Context, args json.RawMessage) (any, error) {
		return g.Checks.DumpNow("requested over the control socket")
	})
	ctl.Handle("violations", func(context.Context, json.RawMessage) (any, error) {
		v := violationsOf(g.Checks)
		ev := g.Checks.Evidence()
		rate, capped := nonzeroByClass(ev.FramesRateLimited), nonzeroByClass(ev.FramesCapped)
		return map[string]any{"counts": v.Counts, "first": v.First, "dumps": g.Checks.Dumps(), "capture": g.Checks.CapturePath(),
			"evidence": ev, "frames_rate_limited": rate, "frames_capped": capped}, nil
	})
	ctl.Handle("checks", func(_ context.Context, args json.RawMessage) (any, error) {
		var set map[string]bool
		if len(args) > 0 && string(args) != "null" {
			if err := json.Unmarshal(args, &set); err != nil {
				return nil, err
			}
		}
		for name, on := range set {
			ck, err := integrity.ParseCheck(name)
			if err != nil {
				return nil, err
			}
			g.Checks.SetEnabled(ck, on)
		}
		return checkStates(g.Checks), nil
	})
	ctl.Handle("flows", func(_ context.Context, args json.RawMessage) (any, error) {
		var q flowQuery
		if len(args) > 0 && string(args) != "null" {
			if err := json.Unmarshal(args, &q); err != nil {
				return nil, err
			}
		}
		ff, err := q.filter()
		if err != nil {
			return nil, err
		}
		return insp.Flows(ff), nil
	})
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	served = make(chan struct{})
	go func() { ctl.Serve(runCtx); close(served) }()
	if cfg.Metrics.Listen != "" {
		reg := metrics.NewRegistry(col, metrics.NewIntegrityCollector(g.Checks), insp.Collector())
		ln, err := metrics.Listen(cfg.Metrics.Listen)
		if err != nil {
			return err
		}
		go metrics.ServeListener(runCtx, ln, reg, log)
		log.Info("metrics", "listen", ln.Addr().String())
	}
	go insp.RunFirstLine(runCtx)
	go insp.RunFastPath(runCtx)
	// Housekeeping: expire flows a slice at a time; reload on SIGHUP.
	go func() {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				insp.Expire(1 << 16)
			case <-hup:
				if err := reload(); err != nil {
					log.Error("reload failed; keeping the running configuration", "err", err)
				}
			}
		}
	}()
	g.Start()
	log.Info("running", "control", cfg.Control.Socket, "version", readBuildVersion().String())
	select {
	case <-ctx.Done():
		log.Info("signal received: detaching and draining")
		return nil
	case <-waitFailed(runCtx, g):
		return g.Engine.Err()
	case <-g.Failed():
		// A link was removed, renamed, moved or reshaped: exit non-zero
		// (the deferred teardown detaches and reports the accounting).
		return g.Err()
	}
}

// waitFailed closes its channel when a worker stops on an error.
func waitFailed(ctx context.Context, g *gate.Gate) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if g.Engine.Err() != nil {
					close(c)
					return
				}
			}
		}
	}()
	return c
}

func (f *runFlags) load() (config.Config, error) {
	cfg := config.Default()
	if f.config != "" {
		var err error
		if cfg, err = config.Load(f.config); err != nil {
			return cfg, err
		}
	}
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if set["outer"] {
		cfg.Outer = f.outer
	}
	if set["inner"] {
		cfg.Inner = f.inner
	}
	if set["queues"] {
		cfg.Queues = f.queues
	}
	if set["carrier"] {
		cfg.XDPCarrier = f.carrier
	}
	if set["xdp-mode"] {
		cfg.XDPMode = f.xdpMode
	}
	if set["bind-mode"] {
		cfg.BindMode = f.bindMode
	}
	if set["frames"] {
		cfg.UMEM.Frames = uint32(f.frames)
	}
	if set["frame-size"] {
		cfg.UMEM.FrameSize = uint32(f.frameSize)
	}
	if set["rx-size"] {
		cfg.Rings.RX = uint32(f.rx)
	}
	if set["tx-size"] {
		cfg.Rings.TX = uint32(f.tx)
	}
	if set["tx-budget"] {
		cfg.Rings.TxBudget = uint32(f.txBudget)
	}
	if set["batch"] {
		cfg.Engine.Batch = f.batch
	}
	if set["cpus"] {
		cfg.Engine.CPUs = nil
		for _, s := range strings.Split(f.cpus, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				return cfg, fmt.Errorf("--cpus %q: %q is not a CPU number", f.cpus, s)
			}
			cfg.Engine.CPUs = append(cfg.Engine.CPUs, n)
		}
	}
	if set["metrics"] {
		cfg.Metrics.Listen = f.metrics
	}
	if set["control"] {
		cfg.Control.Socket = f.control
	}
	if set["log-level"] {
		cfg.Log.Level = f.logLevel
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("invalid settings: %w", err)
	}
	return cfg, nil
}

// checkMemlock warns when the UMEM may not fit the locked-memory limit.
// Root has CAP_IPC_LOCK and is exempt, so this is a warning, not an error.
func checkMemlock(log *slog.Logger) {
	var r unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &r) == nil && r.Cur != unix.RLIM_INFINITY && r.Cur < 64<<20 {
		log.Debug("RLIMIT_MEMLOCK is low; relying on CAP_IPC_LOCK for the UMEM", "limit_bytes", r.Cur)
	}
}

// nonzeroByClass names the non-zero per-class counters, for the control replies.
func nonzeroByClass(a [integrity.NumClasses]uint64) map[string]uint64 {
	m := map[string]uint64{}
	for cl, n := range a {
		if n > 0 {
			m[integrity.Class(cl).String()] = n
		}
	}
	return m
}

// violationsOf reads the violation counts and the first violations, for
// the "stats" and "violations" replies.
func violationsOf(c *integrity.Checks) violationsReply {
	v := violationsReply{Counts: nonzeroByClass(c.Counts())}
	for _, x := range c.Violations() {
		v.First = append(v.First, x.String())
	}
	return v
}
