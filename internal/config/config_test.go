package config

import (
	"errors"
	"fmt"
	"github.com/xskgate/xskgate/internal/protect"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/gate"
	"github.com/xskgate/xskgate/internal/xdpprog"
	"github.com/xskgate/xskgate/internal/xsk"
)

// TestSampleIsValidAndDefault: the shipped file's values outside
// protection (whose prefixes and rules are examples) are the defaults,
// apart from the example interface names.
func TestSampleIsValidAndDefault(t *testing.T) {
	sample, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("xskgate.yaml", sample)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Outer, want.Inner = "eth0", "eth1"
	want.Engine.CPUs = []int{} // the sample writes "cpus: []"
	cfg.Protection = protect.Config{}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("sample differs from the defaults:\n got %+v\nwant %+v", cfg, want)
	}
}

func TestEmptyFileIsDefault(t *testing.T) {
	for _, in := range []string{"", "# nothing\n", "---\n", "umem:\nrings:\n  rx:\n"} {
		cfg, err := Parse("c.yaml", []byte(in))
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if !reflect.DeepEqual(cfg, Default()) {
			t.Errorf("%q: got %+v, want the defaults", in, cfg)
		}
	}
}

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

// full sets every key to a non-default value.
const full = `outer: ens1f0
inner: ens1f1
queues: 2
xdp_mode: generic
xdp_carrier: head
bind_mode: copy
need_wakeup: false
umem:
  frame_size: 2048
  frames: 16384
  headroom: 64
rings:
  fill: 4096
  completion: 1024
  rx: 512
  tx: 256
  tx_budget: 128
engine:
  batch: 32
  cpus: [0]
drain: 250ms
metrics:
  listen: "[::1]:9999"
control:
  socket: /tmp/x.sock
log:
  level: debug
  format: json
integrity:
  ownership: false
  order: false
  poison: false
  bounds: false
  metadata: false
  ip_length: false
  policy: freeze
  dump_dir: /tmp/dumps
  flight_recorder: 1024
  ftrace: true
  evidence_max_bytes: 1GiB
  capture_rate: 2
  capture_burst: 7
  tx_age_limit: 2s
protection:
  enabled: true
  prefixes: [198.18.0.0/24]
  on_table_full: pass
  rules:
    - scope: 198.18.0.0/24
      mode: mitigate
      syn_flood: {rate: 1000, action: challenge}
`

func TestFullRoundTrip(t *testing.T) {
	cfg, err := Parse("full.yaml", []byte(full))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Outer: "ens1f0", Inner: "ens1f1", Queues: 2, XDPMode: "generic", XDPCarrier: "head", BindMode: "copy", NeedWakeup: false,
		UMEM:    UMEMConfig{FrameSize: 2048, Frames: 16384, Headroom: 64},
		Rings:   RingsConfig{Fill: 4096, Completion: 1024, RX: 512, TX: 256, TxBudget: 128},
		Engine:  EngineConfig{Batch: 32, CPUs: []int{0}},
		Drain:   250 * time.Millisecond,
		Metrics: MetricsConfig{Listen: "[::1]:9999"},
		Control: ControlConfig{Socket: "/tmp/x.sock"},
		Log:     LogConfig{Level: "debug", Format: "json"},
		Integrity: IntegrityConfig{Policy: "freeze", DumpDir: "/tmp/dumps", FlightRecorder: 1024, Ftrace: true,
			EvidenceMaxBytes: 1 << 30, CaptureRate: 2, CaptureBurst: 7, TxAgeLimit: 2 * time.Second},
	}
	got := cfg
	prot := got.Protection
	got.Protection = protect.Config{}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parsed\n got %+v\nwant %+v", got, want)
	}
	if !prot.Enabled || len(prot.Rules) != 1 || prot.Rules[0].Mode != protect.ModeMitigate || prot.Rules[0].SynFlood.Rate != 1000 ||
		prot.OnTableFull != protect.TableFullPass {
		t.Fatalf("protection parsed as %+v", prot)
	}

	// Marshal and parse again: nothing may be lost or changed.
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse("again.yaml", out)
	if err != nil {
		t.Fatalf("%v in\n%s", err, out)
	}
	out2, err := yaml.Marshal(again)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != string(out2) {
		t.Fatalf("round trip changed the config:\n%s\n---\n%s", out, out2)
	}
	again.Protection = protect.Config{}
	if !reflect.DeepEqual(again, want) {
		t.Fatalf("round trip\n got %+v\nwant %+v", again, want)
	}
}

func TestBadFiles(t *testing.T) {
	ncpu := runtime.NumCPU()
	for _, tc := range []struct {
		name, in, want string
	}{
		{"unknown top-level key", "outer: eth0\nfoo: 1\n",
			`c.yaml:2: unknown key "foo"`},
		{"top-level typo", "queues: 1\nqueus: 2\n",
			`c.yaml:2: unknown key "queus" (did you mean "queues"?)`},
		{"unknown nested key", "umem:\n  frames: 4096\n  rign: 4\n",
			`c.yaml:3: unknown key "rign" in section "umem"`},
		{"nested typo", "umem:\n  frame_sise: 4096\n",
			`c.yaml:2: unknown key "frame_sise" in section "umem" (did you mean "frame_size"?)`},
		{"duplicate key", "rings:\n  rx: 512\n  rx: 1024\n",
			`c.yaml:3: duplicate key "rx" in section "rings" (first at line 2)`},
		{"string for int", "outer: a\nqueues: many\n",
			`c.yaml:2: queues: want an integer, got "many"`},
		{"negative for uint", "umem:\n  frames: -1\n",
			`c.yaml:2: umem.frames: want an integer from 0 to 4294967295, got -1`},
		{"int for bool", "need_wakeup: 1\n",
			`c.yaml:1: need_wakeup: want true or false, got 1`},
		{"mapping for string", "outer: {a: b}\n",
			`c.yaml:1: outer: want a string, got a mapping`},
		{"scalar for section", "rings: 2048\n",
			`c.yaml:1: rings: want a section of keys, got 2048`},
		{"scalar for list", "engine:\n  cpus: 3\n",
			`c.yaml:2: engine.cpus: want a list such as [0, 1], got 3`},
		{"string in list", "engine:\n  cpus: [0, x]\n",
			`c.yaml:2: engine.cpus[1]: want an integer, got "x"`},
		{"not a mapping", "- a\n- b\n",
			`c.yaml:1: the file must be a mapping of keys such as "outer: eth0", got a list`},
		{"protection not a mapping", "protection: on\n",
			`c.yaml:1: protection: want a section of keys, got "on"`},
		{"not power of two", "# rings\nrings:\n  rx: 1000\n",
			`c.yaml:3: rings.rx: 1000 is not a power of two`},
		{"frame size", "umem:\n  frame_size: 8192\n",
			`c.yaml:2: umem.frame_size: 8192 is not a power of two in [2048, 4096]`},
		{"headroom", "umem:\n  headroom: 4000\n",
			`c.yaml:1: umem: headroom 4000 too large for 4096-byte frames: at most 3392`},
		{"tx budget", "rings:\n  tx: 64\n  tx_budget: 128\n",
			`c.yaml:3: rings.tx_budget: 128 is out of range: use 0 for the kernel default, or 32 to rings.tx (64)`},
		{"bad duration", "drain: 1x\n",
			`c.yaml:1: drain: want a duration such as 500ms or 2s, got "1x"`},
		{"duration without unit", "drain: 5\n",
			`c.yaml:1: drain: want a duration such as 500ms or 2s, got 5 (a duration needs a unit)`},
		{"negative duration", "drain: -1s\n",
			`c.yaml:1: drain: -1s is negative`},
		{"bad xdp mode", "\nxdp_mode: fast\n",
			`c.yaml:2: xdp_mode: "fast" is not an XDP mode: use native or generic`},
		{"bad carrier", "\nxdp_carrier: tail\n",
			`c.yaml:2: xdp_carrier: "tail" is not a record carrier: use auto, meta, head or none`},
		{"bad bind mode", "bind_mode: turbo\n",
			`c.yaml:1: bind_mode: "turbo" is not a bind mode: use auto, copy or zerocopy`},
		{"cpus out of range", "engine:\n  cpus:\n    - 0\n    - 100000\n",
			fmt.Sprintf(`c.yaml:4: engine.cpus[1]: CPU 100000 does not exist: this machine has %d CPUs (0 to %d)`, ncpu, ncpu-1)},
		{"batch", "engine:\n  batch: 0\n",
			`c.yaml:2: engine.batch: 0 is out of range: use 1 to 256`},
		{"same interface", "outer: eth0\ninner: eth0\n",
			`c.yaml:2: inner: "eth0" is also the outer interface: the gate needs two different interfaces`},
		{"long ifname", "outer: averyveryverylongname\n",
			`c.yaml:1: outer: "averyveryverylongname" is longer than 15 bytes: not a Linux interface name`},
		{"metrics listen", "metrics:\n  listen: localhost\n",
			`c.yaml:2: metrics.listen: "localhost" is not host:port: write e.g. "127.0.0.1:9470", or "" to disable metrics`},
		{"relative socket", "control:\n  socket: x.sock\n",
			`c.yaml:2: control.socket: "x.sock" is not an absolute path`},
		{"log level", "log:\n  level: verbose\n",
			`c.yaml:2: log.level: "verbose" is not a log level: use debug, info, warn or error`},
		{"policy", "integrity:\n  policy: ignore\n",
			`c.yaml:2: integrity.policy: "ignore" is not a policy: use drop, freeze or panic`},
		{"flight recorder", "integrity:\n  flight_recorder: 1000\n",
			`c.yaml:2: integrity.flight_recorder: 1000 is not a power of two`},
		{"evidence size unit", "integrity:\n  evidence_max_bytes: 256MB\n",
			`c.yaml:2: integrity.evidence_max_bytes: want a size such as 256MiB or 1GiB, got "256MB"`},
		{"evidence cap too small", "integrity:\n  evidence_max_bytes: 4KiB\n",
			`c.yaml:2: integrity.evidence_max_bytes: 4KiB is too small to hold one flight recorder dump: use at least 64KiB (dump_dir: "" writes no evidence)`},
		{"capture rate", "integrity:\n  capture_rate: 0\n",
			`c.yaml:2: integrity.capture_rate: 0 frames a second: use at least 1 (capture_burst bounds a storm)`},
		{"tx age limit", "integrity:\n  tx_age_limit: 10ms\n",
			`c.yaml:2: integrity.tx_age_limit: 10ms is too short for a completion to come back: use at least 100ms (5s is the default)`},
		{"syntax", "rings:\n  rx: [\n",
			`c.yaml:2: invalid YAML: did not find expected node content`},
		{"two documents", "queues: 1\n---\nqueues: 2\n",
			`c.yaml:2: a second YAML document (---): keep the configuration in one document`},
		{"several problems, in line order", "log:\n  format: xml\nqueues: -1\nrings:\n  tx: 3\n",
			"c.yaml:2: log.format: \"xml\" is not a log format: use text or json\n" +
				"c.yaml:3: queues: -1 is negative: use 0 for all queues\n" +
				"c.yaml:5: rings.tx: 3 is not a power of two"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(tc.in))
			if err == nil {
				t.Fatalf("no error, want %s", tc.want)
			}
			if err.Error() != tc.want {
				t.Fatalf("error\n got %s\nwant %s", err, tc.want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("%T is not a *config.Error", err)
			}
		})
	}
}

func TestSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
		out  string
	}{
		{"0", 0, "0"}, {"1000", 1000, "1000"}, {"1024", 1024, "1KiB"}, {"512KiB", 512 << 10, "512KiB"},
		{"256MiB", 256 << 20, "256MiB"}, {"1GiB", 1 << 30, "1GiB"}, {"1536MiB", 1536 << 20, "1536MiB"}, {" 2 GiB", 2 << 30, "2GiB"},
	} {
		var s Size
		if err := s.UnmarshalText([]byte(tc.in)); err != nil || s != tc.want {
			t.Errorf("%q: %d, %v; want %d", tc.in, s, err, tc.want)
		}
		if s.String() != tc.out {
			t.Errorf("%q prints as %q, want %q", tc.in, s, tc.out)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5GiB", "256MB", "1TiB", "99999999999GiB"} {
		var s Size
		if err := s.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q parsed as %d", in, s)
		}
	}
}

func TestIntegrityChecks(t *testing.T) {
	cfg, err := Parse("full.yaml", []byte(full))
	if err != nil {
		t.Fatal(err)
	}
	ic := cfg.IntegrityChecks()
	if ic.MaxBytes != 1<<30 || ic.CaptureRate != 2 || ic.CaptureBurst != 7 || ic.DumpDir != "/tmp/dumps" {
		t.Fatalf("IntegrityChecks() = %+v", ic)
	}
}

func TestValidateAfterFlags(t *testing.T) {
	cfg := Default()
	cfg.Rings.RX = 1000 // as if from a flag: no file, no line
	err := cfg.Validate()
	if err == nil || err.Error() != "rings.rx: 1000 is not a power of two" {
		t.Fatalf("got %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "xskgate.yaml")
	if err := os.WriteFile(path, []byte("queues: 3\nrings:\n  rx: 7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if want := path + ":3: rings.rx: 7 is not a power of two"; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "deploy/xskgate.yaml") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestGate(t *testing.T) {
	cfg, err := Parse("full.yaml", []byte(full))
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Gate()
	want := gate.Config{
		Outer: "ens1f0", Inner: "ens1f1", Queues: 2,
		Umem: xsk.UmemConfig{FrameSize: 2048, NumFrames: 16384, Headroom: 64,
			FillSize: 4096, CompSize: 1024, Mode: xsk.ModeCopy, NoNeedWakeup: true},
		RxSize: 512, TxSize: 256, TxBudget: 128,
		XDPMode: xdpprog.ModeGeneric, Carrier: xdpprog.CarrierHead,
		Engine: engine.Config{Batch: 32, CPUs: []int{0}},
		Drain:  250 * time.Millisecond,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Gate()\n got %+v\nwant %+v", got, want)
	}
	if cfg.LogLevel().String() != "DEBUG" {
		t.Errorf("LogLevel = %v", cfg.LogLevel())
	}
	d := Default().Gate()
	if d.XDPMode != xdpprog.ModeNative || d.Umem.Mode != xsk.ModeAuto || d.Umem.NoNeedWakeup {
		t.Errorf("default gate config %+v", d)
	}
}

func TestWarnings(t *testing.T) {
	for _, tc := range []struct {
		listen string
		warn   bool
	}{
		{"127.0.0.1:9470", false}, {"[::1]:9470", false}, {"localhost:1", false}, {"", false},
		{"0.0.0.0:9470", true}, {":9470", true}, {"198.19.1.3:80", true},
	} {
		c := Default()
		c.Metrics.Listen = tc.listen
		if ws := c.Warnings(); (len(ws) > 0) != tc.warn {
			t.Errorf("listen %q: warnings %q", tc.listen, ws)
		}
	}
}

// TestShippedConfig: the file users copy passes `xskgate config check`,
// protection section and first line included.
func TestShippedConfig(t *testing.T) {
	c, err := Load("../../deploy/xskgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Protection.Rules) == 0 || len(c.Protection.Prefixes) == 0 || c.Protection.FirstLine.Mode == "" ||
		c.Protection.OnTableFull != protect.TableFullChallenge {
		t.Fatalf("the shipped protection section is not documented in full: %+v", c.Protection)
	}
	c.Protection.Enabled = true // what a user turns on must be valid too
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
