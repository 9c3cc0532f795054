package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/gate"
	"github.com/xskgate/xskgate/internal/integrity"
	"github.com/xskgate/xskgate/internal/protect"
	"github.com/xskgate/xskgate/internal/xdpprog"
	"github.com/xskgate/xskgate/internal/xsk"
)

// Config is the daemon's configuration. Field comments give the defaults.
type Config struct {
	Outer      string          `yaml:"outer"`       // Internet-side interface; required to run, may come from a flag
	Inner      string          `yaml:"inner"`       // protected-side interface
	Queues     int             `yaml:"queues"`      // queue pairs to serve; 0: all (any other count must equal the RX queue count)
	XDPMode    string          `yaml:"xdp_mode"`    // native | generic
	XDPCarrier string          `yaml:"xdp_carrier"` // auto | meta | head | none: how the XDP program hands the frame length to user space
	BindMode   string          `yaml:"bind_mode"`   // auto | copy | zerocopy
	NeedWakeup bool            `yaml:"need_wakeup"` // true
	UMEM       UMEMConfig      `yaml:"umem"`
	Rings      RingsConfig     `yaml:"rings"`
	Engine     EngineConfig    `yaml:"engine"`
	Drain      time.Duration   `yaml:"drain"` // 1s: how long shutdown waits for TX completions
	Metrics    MetricsConfig   `yaml:"metrics"`
	Control    ControlConfig   `yaml:"control"`
	Log        LogConfig       `yaml:"log"`
	Integrity  IntegrityConfig `yaml:"integrity"`
	// Protection is the TCP protection stage's rules (package protect).
	Protection protect.Config `yaml:"protection"`
}

// UMEMConfig is the packet memory shared by every socket.
type UMEMConfig struct {
	FrameSize uint32 `yaml:"frame_size"` // 4096; a power of two in [2048, 4096]
	Frames    uint32 `yaml:"frames"`     // 8192
	Headroom  uint32 `yaml:"headroom"`   // 0
}

// RingsConfig sizes each socket's rings; every size is a power of two.
type RingsConfig struct {
	Fill       uint32 `yaml:"fill"`       // 2048
	Completion uint32 `yaml:"completion"` // 2048
	RX         uint32 `yaml:"rx"`         // 2048
	TX         uint32 `yaml:"tx"`         // 2048
	TxBudget   uint32 `yaml:"tx_budget"`  // 0: the kernel's default (32); else in [32, tx]
}

// EngineConfig tunes the workers.
type EngineConfig struct {
	Batch int   `yaml:"batch"` // 64; descriptors per ring operation, 1..256
	CPUs  []int `yaml:"cpus"`  // empty: no pinning; else worker i runs on CPUs[i % len]
}

// MetricsConfig is the Prometheus endpoint.
type MetricsConfig struct {
	Listen string `yaml:"listen"` // "127.0.0.1:9470"; "" disables it
}

// ControlConfig is the CLI's control socket.
type ControlConfig struct {
	Socket string `yaml:"socket"` // "/run/xskgate/xskgate.sock"
}

// LogConfig selects the log output.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// IntegrityConfig switches the integrity checks, chooses what happens on a
// violation, and bounds the evidence written (package integrity).
type IntegrityConfig struct {
	Ownership      bool   `yaml:"ownership"`       // true
	Order          bool   `yaml:"order"`           // true
	Poison         bool   `yaml:"poison"`          // true
	Bounds         bool   `yaml:"bounds"`          // true
	Metadata       bool   `yaml:"metadata"`        // true
	IPLength       bool   `yaml:"ip_length"`       // true
	Policy         string `yaml:"policy"`          // drop | freeze | panic
	DumpDir        string `yaml:"dump_dir"`        // "/var/lib/xskgate"
	FlightRecorder uint32 `yaml:"flight_recorder"` // 4096 events per socket, a power of two
	Ftrace         bool   `yaml:"ftrace"`          // false
	// Evidence limits under a storm of violations: every evidence file in
	// dump_dir (earlier runs' included) counts against EvidenceMaxBytes;
	// each violation class captures at most CaptureBurst frames at once
	// and CaptureRate a second after.
	EvidenceMaxBytes Size   `yaml:"evidence_max_bytes"` // 256MiB
	CaptureRate      uint32 `yaml:"capture_rate"`       // 10 frames a second per class
	CaptureBurst     uint32 `yaml:"capture_burst"`      // 100 frames per class
	// TxAgeLimit: a TX entry not completed this long while its socket's
	// kernel completes others is reported (tx_overdue).
	TxAgeLimit time.Duration `yaml:"tx_age_limit"` // 5s
}

// Default returns the configuration used for every key the file leaves out.
func Default() Config {
	return Config{
		XDPMode:    "native",
		XDPCarrier: "auto",
		BindMode:   "auto",
		NeedWakeup: true,
		UMEM:       UMEMConfig{FrameSize: 4096, Frames: 8192},
		Rings:      RingsConfig{Fill: 2048, Completion: 2048, RX: 2048, TX: 2048},
		Engine:     EngineConfig{Batch: 64},
		Drain:      time.Second,
		Metrics:    MetricsConfig{Listen: "127.0.0.1:9470"},
		Control:    ControlConfig{Socket: "/run/xskgate/xskgate.sock"},
		Log:        LogConfig{Level: "info", Format: "text"},
		Integrity: IntegrityConfig{
			Ownership: true, Order: true, Poison: true, Bounds: true, Metadata: true, IPLength: true,
			Policy: "drop", DumpDir: "/var/lib/xskgate", FlightRecorder: 4096,
			EvidenceMaxBytes: integrity.DefaultMaxBytes, CaptureRate: integrity.DefaultCaptureRate,
			CaptureBurst: integrity.DefaultCaptureBurst, TxAgeLimit: integrity.DefaultTxAgeLimit,
		},
	}
}

// Error is one problem with the configuration. Parse fills File and Line;
// Validate on a Config built from flags leaves them empty.
type Error struct {
	File string // file name as given to Parse or Load; "" if none
	Line int    // 1-based; 0 if unknown (e.g. the value is a default)
	Key  string // dotted key path such as "rings.rx" or "engine.cpus[1]"; "" if the message names it
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Validate checks every value and the relations between them. It returns
// nil or one *Error per problem, joined with errors.Join (one per line).
func (c Config) Validate() error {
	return joinErrors(c.problems())
}

func joinErrors(ps []*Error) error {
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errors.Join(errs...)
}

// problems lists what is wrong, in file order of the keys.
func (c Config) problems() []*Error {
	var ps []*Error
	bad := func(key, format string, args ...any) {
		ps = append(ps, &Error{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	for _, f := range []struct{ key, v string }{{"outer", c.Outer}, {"inner", c.Inner}} {
		if msg := ifnameProblem(f.v); msg != "" {
			bad(f.key, "%s", msg)
		}
	}
	if c.Outer != "" && c.Outer == c.Inner {
		bad("inner", "%q is also the outer interface: the gate needs two different interfaces", c.Inner)
	}
	if c.Queues < 0 {
		bad("queues", "%d is negative: use 0 for all queues", c.Queues)
	}
	if _, err := xdpprog.ParseMode(c.XDPMode); err != nil {
		bad("xdp_mode", "%q is not an XDP mode: use native or generic", c.XDPMode)
	}
	if _, err := xdpprog.ParseCarrier(c.XDPCarrier); err != nil {
		bad("xdp_carrier", "%q is not a record carrier: use auto, meta, head or none", c.XDPCarrier)
	}
	if _, err := xsk.ParseMode(c.BindMode); err != nil {
		bad("bind_mode", "%q is not a bind mode: use auto, copy or zerocopy", c.BindMode)
	}

	umemOK := true
	if fs := c.UMEM.FrameSize; !isPow2(fs) || fs < 2048 || fs > 4096 {
		bad("umem.frame_size", "%d is not a power of two in [2048, 4096]", fs)
		umemOK = false
	}
	if c.UMEM.Frames == 0 {
		bad("umem.frames", "0 frames: need at least one per FILL slot of every socket")
		umemOK = false
	}
	for _, r := range []struct {
		key string
		v   uint32
	}{{"rings.fill", c.Rings.Fill}, {"rings.completion", c.Rings.Completion}, {"rings.rx", c.Rings.RX}, {"rings.tx", c.Rings.TX}} {
		if !isPow2(r.v) {
			bad(r.key, "%d is not a power of two", r.v)
			umemOK = false
		}
	}
	if umemOK {
		// The remaining UMEM rules (headroom against frame size, total
		// size) are the kernel's; xsk owns them so that they live in one
		// place.
		if err := c.Umem().Validate(); err != nil {
			bad("umem", "%v", err)
		}
	}
	if b := c.Rings.TxBudget; b != 0 && (b < 32 || b > c.Rings.TX) {
		bad("rings.tx_budget", "%d is out of range: use 0 for the kernel default, or 32 to rings.tx (%d)", b, c.Rings.TX)
	}

	if b := c.Engine.Batch; b < 1 || b > 256 {
		bad("engine.batch", "%d is out of range: use 1 to 256", b)
	}
	ncpu := runtime.NumCPU()
	for i, cpu := range c.Engine.CPUs {
		if cpu < 0 || cpu >= ncpu {
			bad(fmt.Sprintf("engine.cpus[%d]", i), "CPU %d does not exist: this machine has %d CPUs (0 to %d)", cpu, ncpu, ncpu-1)
		}
	}
	if c.Drain < 0 {
		bad("drain", "%v is negative", c.Drain)
	}

	if l := c.Metrics.Listen; l != "" {
		if _, port, err := net.SplitHostPort(l); err != nil || port == "" {
			bad("metrics.listen", "%q is not host:port: write e.g. \"127.0.0.1:9470\", or \"\" to disable metrics", l)
		}
	}
	switch s := c.Control.Socket; {
	case s == "":
		bad("control.socket", "empty: the CLI needs a control socket path")
	case !filepath.IsAbs(s):
		bad("control.socket", "%q is not an absolute path", s)
	case len(s) >= 108:
		// sun_path in struct sockaddr_un holds 108 bytes with the NUL.
		bad("control.socket", "path is %d bytes long: a Unix socket path must be under 108", len(s))
	}
	if _, ok := logLevels[c.Log.Level]; !ok {
		bad("log.level", "%q is not a log level: use debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "%q is not a log format: use text or json", c.Log.Format)
	}

	switch c.Integrity.Policy {
	case "drop", "freeze", "panic":
	default:
		bad("integrity.policy", "%q is not a policy: use drop, freeze or panic", c.Integrity.Policy)
	}
	if d := c.Integrity.DumpDir; d != "" && !filepath.IsAbs(d) {
		bad("integrity.dump_dir", "%q is not an absolute path", d)
	}
	if n := c.Integrity.FlightRecorder; !isPow2(n) {
		bad("integrity.flight_recorder", "%d is not a power of two", n)
	}
	if n := c.Integrity.EvidenceMaxBytes; n < 64<<10 {
		bad("integrity.evidence_max_bytes", "%s is too small to hold one flight recorder dump: use at least 64KiB (dump_dir: \"\" writes no evidence)", n)
	}
	if c.Integrity.CaptureRate == 0 {
		bad("integrity.capture_rate", "0 frames a second: use at least 1 (capture_burst bounds a storm)")
	}
	if c.Integrity.TxAgeLimit < 100*time.Millisecond {
		bad("integrity.tx_age_limit", "%v is too short for a completion to come back: use at least 100ms (5s is the default)", c.Integrity.TxAgeLimit)
	}
	if c.Integrity.CaptureBurst == 0 {
		bad("integrity.capture_burst", "0 frames: use at least 1")
	}
	// The protection stage validates its own rules; its messages name
	// the field ("protection.rules[0].mode: ...").
	if err := c.Protection.Validate(); err != nil {
		key, msg, ok := strings.Cut(err.Error(), ": ")
		if !ok || !strings.HasPrefix(key, "protection") {
			key, msg = "protection", err.Error()
		}
		bad(key, "%s", msg)
	}
	return ps
}

// ifnameProblem checks a Linux interface name (dev_valid_name); "" is valid
// here because the name may still come from a flag.
func ifnameProblem(s string) string {
	switch {
	case s == "":
		return ""
	case len(s) > 15:
		return fmt.Sprintf("%q is longer than 15 bytes: not a Linux interface name", s)
	case s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n"):
		return fmt.Sprintf("%q is not a Linux interface name", s)
	}
	return ""
}

func isPow2(v uint32) bool { return v != 0 && v&(v-1) == 0 }

var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
}

// Warnings lists settings that are valid but probably not intended; the
// daemon logs them at startup.
func (c Config) Warnings() []string {
	var ws []string
	if l := c.Metrics.Listen; l != "" {
		host, _, err := net.SplitHostPort(l)
		if err == nil && !isLoopback(host) {
			ws = append(ws, fmt.Sprintf("metrics.listen %q is not a loopback address: the metrics endpoint has no authentication, firewall it", l))
		}
	}
	return ws
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// LogLevel is log.level as a slog.Level (info if invalid).
func (c Config) LogLevel() slog.Level { return logLevels[c.Log.Level] }

// Umem returns the UMEM configuration for xsk. Call it on a validated
// Config; an invalid bind mode maps to auto.
func (c Config) Umem() xsk.UmemConfig {
	mode, _ := xsk.ParseMode(c.BindMode)
	return xsk.UmemConfig{
		FrameSize:    c.UMEM.FrameSize,
		NumFrames:    c.UMEM.Frames,
		Headroom:     c.UMEM.Headroom,
		FillSize:     c.Rings.Fill,
		CompSize:     c.Rings.Completion,
		Mode:         mode,
		NoNeedWakeup: !c.NeedWakeup,
	}
}

// Gate returns the gate's configuration (without a Logger). Call it on a
// validated Config; an invalid XDP mode maps to native.
func (c Config) Gate() gate.Config {
	xm, _ := xdpprog.ParseMode(c.XDPMode)
	xc, _ := xdpprog.ParseCarrier(c.XDPCarrier)
	return gate.Config{
		Outer:    c.Outer,
		Inner:    c.Inner,
		Queues:   c.Queues,
		Umem:     c.Umem(),
		RxSize:   c.Rings.RX,
		TxSize:   c.Rings.TX,
		TxBudget: c.Rings.TxBudget,
		XDPMode:  xm,
		Carrier:  xc,
		Engine: engine.Config{
			Batch: c.Engine.Batch,
			CPUs:  append([]int(nil), c.Engine.CPUs...),
		},
		Drain: c.Drain,
	}
}

// IntegrityChecks returns the integrity checks' configuration. Call it on a
// validated Config.
func (c Config) IntegrityChecks() integrity.Config {
	ic := integrity.DefaultConfig()
	ic.Ownership, ic.Order, ic.Poison = c.Integrity.Ownership, c.Integrity.Order, c.Integrity.Poison
	ic.Bounds, ic.Metadata, ic.IPLength = c.Integrity.Bounds, c.Integrity.Metadata, c.Integrity.IPLength
	ic.Policy, _ = integrity.ParsePolicy(c.Integrity.Policy)
	ic.DumpDir = c.Integrity.DumpDir
	ic.RecorderSize = int(c.Integrity.FlightRecorder)
	ic.Ftrace = c.Integrity.Ftrace
	ic.MaxBytes = int64(c.Integrity.EvidenceMaxBytes)
	ic.CaptureRate = float64(c.Integrity.CaptureRate)
	ic.CaptureBurst = int(c.Integrity.CaptureBurst)
	ic.TxAgeLimit = c.Integrity.TxAgeLimit
	return ic
}
