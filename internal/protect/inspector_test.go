package protect

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/packet"
)

func TestSipHashVector(t *testing.T) {
	// SipHash-2-4 reference: key 00..0f, message 00..07.
	k := sipKey{0x0706050403020100, 0x0f0e0d0c0b0a0908}
	if got := k.sum([]uint64{0x0706050403020100}); got != 0x93f5f5799a932462 {
		t.Fatalf("siphash = %#x", got)
	}
	if got := k.sum(nil); got != 0x726fdb47dd0e0e31 {
		t.Fatalf("siphash(empty) = %#x", got)
	}
}

func TestReasonNames(t *testing.T) {
	for r := reason(0); r < numReasons; r++ {
		if reasonNames[r] == "" {
			t.Errorf("reason %d has no name", r)
		}
	}
	if rNotFound.String() != "not_found" || rBlocklist.String() != "blocklist" || rProxyEstablished.String() != "proxy_established" {
		t.Fatal("reason names misaligned with flow.Reason")
	}
}

func TestConfigValidate(t *testing.T) {
	p := netip.MustParsePrefix("198.18.0.0/24")
	ok := func() Config { return baseConfig(ModeMitigate) }
	tests := []struct {
		name string
		mut  func(*Config)
		want string
	}{
		{"ok", func(*Config) {}, ""},
		{"disabled empty", func(c *Config) { *c = Config{} }, ""},
		{"no prefixes", func(c *Config) { c.Prefixes = nil }, "protection.prefixes"},
		{"bad mode", func(c *Config) { c.Rules[0].Mode = "on" }, `rules[0].mode: unknown or missing mode "on"`},
		{"bad sub mode", func(c *Config) { c.Rules[1].OutOfState.Mode = "x" }, "rules[1].out_of_state.mode"},
		{"scope outside", func(c *Config) { c.Rules[0].Scope = netip.MustParsePrefix("198.19.0.0/16") }, "overlaps no protected prefix"},
		{"dup name", func(c *Config) { c.Rules[1].Name = "v4" }, `"v4" already names rules[0]`},
		{"bad action", func(c *Config) { c.Rules[0].SynFlood.Action = "rst" }, "syn_flood.action"},
		{"bad window", func(c *Config) { c.Rules[0].SynFlood.RetransmitWindow = 100 * time.Millisecond }, "retransmit window"},
		{"per source burst alone", func(c *Config) { c.Rules[0].SynFlood.PerSourceBurst = 3 }, "per_source_burst"},
		{"mss", func(c *Config) { c.SynProxy.MSS = 100 }, "syn_proxy.mss"},
		{"missing scope", func(c *Config) { c.Rules[0].Scope = netip.Prefix{} }, "rules[0].scope"},
		{"bad allowlist", func(c *Config) { c.Allowlist = []netip.Prefix{{}} }, "allowlist[0]"},
		{"bad on_table_full", func(c *Config) { c.OnTableFull = "evict" }, `protection.on_table_full: unknown action "evict"`},
	}
	_ = p
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.mut(&c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestRuleMostSpecific(t *testing.T) {
	c := baseConfig(ModeMonitor)
	c.Rules = append(c.Rules, Rule{Name: "host", Scope: netip.MustParsePrefix("198.18.0.2/32"), Mode: ModeMitigate})
	rs, err := compile(&c)
	if err != nil {
		t.Fatal(err)
	}
	if r := rs.match(srv4); r.name != "host" {
		t.Fatalf("matched %q", r.name)
	}
	if r := rs.match(netip.MustParseAddr("198.18.0.3")); r.name != "v4" {
		t.Fatalf("matched %q", r.name)
	}
	if r := rs.match(netip.MustParseAddr("198.19.11.1")); r != nil {
		t.Fatal("matched outside")
	}
}

func ackFlood(src netip.Addr, dst netip.Addr, n uint32) tseg {
	return tseg{src: src, dst: dst, sport: uint16(1000 + n), dport: 80, seq: 12345 * n, ack: 777 * n, flags: packet.ACK, win: 100, ws: -1}
}

// TestOutOfState: verdicts of an inbound ACK with no flow per mode and list.
func TestOutOfState(t *testing.T) {
	tests := []struct {
		name    string
		mut     func(*Config)
		src     netip.Addr
		dst     netip.Addr
		want    engine.Verdict
		reason  string
		verdict string
		outcome string
	}{
		{"mitigate drops", nil, cli4, srv4, engine.Drop, "not_found", "drop", "drop"},
		{"mitigate v6", nil, cli6, srv6, engine.Drop, "not_found", "drop", "drop"},
		{"monitor passes", func(c *Config) { c.Rules[0].Mode = ModeMonitor }, cli4, srv4, engine.Forward, "not_found", "drop", "pass"},
		{"sub-mode monitor", func(c *Config) { c.Rules[0].OutOfState.Mode = ModeMonitor }, cli4, srv4, engine.Forward, "not_found", "drop", "pass"},
		{"disabled", func(c *Config) { c.Rules[0].Mode = ModeDisabled }, cli4, srv4, engine.Forward, "not_found", "pass", "pass"},
		{"global off", func(c *Config) { c.Enabled = false }, cli4, srv4, engine.Forward, "not_found", "pass", "pass"},
		{"no rule", func(c *Config) { c.Rules = c.Rules[1:] }, cli4, srv4, engine.Forward, "not_found", "pass", "pass"},
		{"allowlisted", func(c *Config) { c.Allowlist = []netip.Prefix{netip.MustParsePrefix("198.19.113.0/24")} }, cli4, srv4, engine.Forward, "allowlist", "pass", "pass"},
		{"blocklisted", func(c *Config) { c.Blocklist = []netip.Prefix{netip.MustParsePrefix("198.19.113.0/24")} }, cli4, srv4, engine.Drop, "blocklist", "drop", "drop"},
		{"block beats allow", func(c *Config) {
			c.Allowlist = []netip.Prefix{netip.MustParsePrefix("198.19.113.7/32")}
			c.Blocklist = []netip.Prefix{netip.MustParsePrefix("198.19.113.0/24")}
		}, cli4, srv4, engine.Drop, "blocklist", "drop", "drop"},
		{"unprotected dst", nil, cli4, netip.MustParseAddr("198.19.2.1"), engine.Forward, "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := baseConfig(ModeMitigate)
			if tc.mut != nil {
				tc.mut(&c)
			}
			i, _ := newTestInspector(t, c)
			pk := run(i, engine.Outer, ackFlood(tc.src, tc.dst, 1).frame())
			if pk.Verdict != tc.want {
				t.Fatalf("verdict %v, want %v", pk.Verdict, tc.want)
			}
			st := i.Stats()
			if tc.reason == "" {
				if st.Bypass["unprotected"] != 1 || len(st.Decisions) != 0 {
					t.Fatalf("stats %+v", st)
				}
				return
			}
			if n := st.Count(tc.reason, tc.verdict, tc.outcome); n != 1 {
				t.Fatalf("count(%s,%s,%s) = %d; decisions %+v", tc.reason, tc.verdict, tc.outcome, n, st.Decisions)
			}
		})
	}
}

// TestOutOfStateThreshold: drops start when the rate exceeds rate/burst
// and stop once it falls back (after the hold).
func TestOutOfStateThreshold(t *testing.T) {
	c := baseConfig(ModeMitigate)
	c.Rules[0].OutOfState = OutOfStateRule{Rate: 10, Burst: 5}
	i, clk := newTestInspector(t, c)
	var verdicts []engine.Verdict
	for n := uint32(0); n < 10; n++ {
		verdicts = append(verdicts, run(i, engine.Outer, ackFlood(cli4, srv4, n).frame()).Verdict)
	}
	for n, v := range verdicts {
		want := engine.Forward
		if n > 5 { // burst 5: the sixth packet still conforms (GCRA tolerance)
			want = engine.Drop
		}
		if v != want {
			t.Fatalf("packet %d: %v, want %v (all %v)", n, v, want, verdicts)
		}
	}
	if st := i.Stats(); st.Count("not_found", "pass", "pass") != 6 || st.Count("not_found", "drop", "drop") != 4 {
		t.Fatalf("decisions %+v", st.Decisions)
	}
	// Quiet for 3 s (beyond burst and hold): tolerated again.
	clk.advance(3 * time.Second)
	if v := run(i, engine.Outer, ackFlood(cli4, srv4, 99).frame()).Verdict; v != engine.Forward {
		t.Fatalf("after quiet: %v", v)
	}
}

func TestNonTCPAndMalformed(t *testing.T) {
	i, _ := newTestInspector(t, baseConfig(ModeMitigate))
	arp := make([]byte, 42, 2048)
	arp[12], arp[13] = 0x08, 0x06
	if v := run(i, engine.Outer, arp).Verdict; v != engine.Forward {
		t.Fatalf("arp: %v", v)
	}
	udp := ackFlood(cli4, srv4, 1).frame()
	udp[14+9] = packet.ProtoUDP // now a (bad-checksum but well-formed) UDP datagram
	udp[14+20+4], udp[14+20+5] = 0, 20
	if v := run(i, engine.Outer, udp).Verdict; v != engine.Forward {
		t.Fatalf("udp: %v", v)
	}
	trunc := ackFlood(cli4, srv4, 1).frame()[:14+20+10]
	trunc[14+2], trunc[14+3] = 0, 30
	if v := run(i, engine.Outer, trunc).Verdict; v != engine.Drop {
		t.Fatalf("truncated: %v", v)
	}
	st := i.Stats()
	if st.Bypass["non_ip"] != 1 || st.Bypass["non_tcp"] != 1 || st.Malformed["truncated_tcp"] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// conn is a client/server pair driven through an Inspector.
type conn struct {
	t          testing.TB
	i          *Inspector
	c, s       netip.Addr
	cp, sp     uint16
	cSeq, sSeq uint32
}

func (x *conn) fromClient(flags uint8, data []byte) tseg {
	return tseg{src: x.c, dst: x.s, sport: x.cp, dport: x.sp, seq: x.cSeq, ack: x.sSeq, flags: flags, win: 500, ws: -1, payload: data}
}

func (x *conn) fromServer(flags uint8, data []byte) tseg {
	return tseg{src: x.s, dst: x.c, sport: x.sp, dport: x.cp, seq: x.sSeq, ack: x.cSeq, flags: flags, win: 500, ws: -1, payload: data, fromServer: true}
}

// open runs the handshake through x.i: the client's SYN, the server's
// SYN-ACK (the client's ACK is the caller's, often the segment a test is
// about).
func (x *conn) open() {
	syn := x.fromClient(packet.SYN, nil)
	syn.ack = 0
	run(x.i, engine.Outer, syn.frame())
	x.cSeq++
	run(x.i, engine.Inner, x.fromServer(packet.SYN|packet.ACK, nil).frame())
	x.sSeq++
}

// noSynFlood sets a SYN threshold the tests never reach.
func noSynFlood(c Config) Config {
	for k := range c.Rules {
		c.Rules[k].SynFlood.Rate, c.Rules[k].SynFlood.Burst = 1e6, 1e6
	}
	return c
}

func TestTrackedConnection(t *testing.T) {
	i, _ := newTestInspector(t, noSynFlood(baseConfig(ModeMitigate)))
	x := &conn{t: t, i: i, c: cli4, s: srv4, cp: 40000, sp: 80, cSeq: 1000, sSeq: 9000}
	syn := x.fromClient(packet.SYN, nil)
	syn.ack, syn.mss, syn.ws, syn.sack = 0, 1460, 7, true
	steps := []struct {
		side engine.Side
		seg  tseg
		want engine.Verdict
	}{
		{engine.Outer, syn, engine.Forward},
	}
	for _, s := range steps {
		if v := run(i, s.side, s.seg.frame()).Verdict; v != s.want {
			t.Fatalf("%v", v)
		}
	}
	x.cSeq++
	sa := x.fromServer(packet.SYN|packet.ACK, nil)
	sa.mss, sa.ws, sa.sack = 1460, 7, true
	if v := run(i, engine.Inner, sa.frame()).Verdict; v != engine.Forward {
		t.Fatalf("synack %v", v)
	}
	x.sSeq++
	for k := 0; k < 5; k++ {
		if v := run(i, engine.Outer, x.fromClient(packet.ACK|packet.PSH, []byte("hello")).frame()).Verdict; v != engine.Forward {
			t.Fatalf("data %d: %v", k, v)
		}
		x.cSeq += 5
		if v := run(i, engine.Inner, x.fromServer(packet.ACK, nil).frame()).Verdict; v != engine.Forward {
			t.Fatalf("ack %d: %v", k, v)
		}
	}
	// Out of window from the client: dropped (rate 0 = always over).
	bad := x.fromClient(packet.ACK, nil)
	bad.seq += 1 << 30
	if v := run(i, engine.Outer, bad.frame()).Verdict; v != engine.Drop {
		t.Fatalf("out of window: %v", v)
	}
	// The same from the server is tracked, never dropped.
	bad = x.fromServer(packet.ACK, nil)
	bad.seq += 1 << 30
	if v := run(i, engine.Inner, bad.frame()).Verdict; v != engine.Forward {
		t.Fatalf("server out of window: %v", v)
	}
	if st := i.Stats(); st.Count("out_of_sequence", "drop", "drop") != 1 {
		t.Fatalf("%+v", st.Decisions)
	}
	if fl := i.Flows(FlowFilter{Dst: netip.MustParsePrefix("198.18.0.0/24")}); len(fl) != 1 || fl[0].Src != cli4 {
		t.Fatalf("flows %+v", fl)
	}
}

func synFrom(src netip.Addr, sport uint16, isn uint32) tseg {
	return tseg{src: src, dst: srv4, sport: sport, dport: 80, seq: isn, flags: packet.SYN, win: 64240, mss: 1460, ws: 7, sack: true}
}

func TestRetransmit(t *testing.T) {
	c := baseConfig(ModeMitigate)
	c.Rules[0].SynFlood = SynFloodRule{Rate: 0, Action: ActionRetransmit}
	i, clk := newTestInspector(t, c)
	syn := synFrom(cli4, 5555, 42)
	if v := run(i, engine.Outer, syn.frame()).Verdict; v != engine.Drop {
		t.Fatalf("first SYN: %v", v)
	}
	clk.advance(100 * time.Millisecond)
	if v := run(i, engine.Outer, syn.frame()).Verdict; v != engine.Drop {
		t.Fatalf("too-early repeat: %v", v)
	}
	other := synFrom(cli4, 5555, 43) // same tuple, new ISN: not a retransmission
	clk.advance(900 * time.Millisecond)
	if v := run(i, engine.Outer, other.frame()).Verdict; v != engine.Drop {
		t.Fatalf("other ISN: %v", v)
	}
	if v := run(i, engine.Outer, syn.frame()).Verdict; v != engine.Forward {
		t.Fatalf("retransmission after 1s: %v", v)
	}
	// A further retransmission belongs to the tracked handshake.
	if v := run(i, engine.Outer, syn.frame()).Verdict; v != engine.Forward {
		t.Fatalf("second retransmission: %v", v)
	}
	// Too late: beyond the window the SYN counts as a first one again.
	late := synFrom(cli4, 6666, 1)
	run(i, engine.Outer, late.frame())
	clk.advance(5 * time.Second)
	if v := run(i, engine.Outer, late.frame()).Verdict; v != engine.Drop {
		t.Fatalf("late retransmission: %v", v)
	}
	st := i.Stats()
	if st.Count("retransmit_passed", "pass", "pass") != 1 || st.Count("challenge_needed", "drop", "drop") != 5 {
		t.Fatalf("%+v", st.Decisions)
	}
}

func TestSynThresholdPerSource(t *testing.T) {
	c := baseConfig(ModeMitigate)
	c.Rules[0].SynFlood = SynFloodRule{Rate: 1000000, Burst: 1000000, PerSourceRate: 1, PerSourceBurst: 2, Action: ActionRetransmit}
	i, _ := newTestInspector(t, c)
	var got []engine.Verdict
	for n := range 5 {
		got = append(got, run(i, engine.Outer, synFrom(cli4, uint16(2000+n), 1).frame()).Verdict)
	}
	// Another source is unaffected.
	other := run(i, engine.Outer, synFrom(netip.MustParseAddr("198.19.113.99"), 2000, 1).frame()).Verdict
	if got[0] != engine.Forward || got[2] != engine.Forward || got[3] != engine.Drop || got[4] != engine.Drop || other != engine.Forward {
		t.Fatalf("per-source: %v, other %v", got, other)
	}
}

func TestSynMonitor(t *testing.T) {
	c := baseConfig(ModeMonitor)
	i, _ := newTestInspector(t, c)
	if v := run(i, engine.Outer, synFrom(cli4, 1, 1).frame()).Verdict; v != engine.Forward {
		t.Fatalf("monitor SYN: %v", v)
	}
	if st := i.Stats(); st.Count("challenge_needed", "challenge", "pass") != 1 {
		t.Fatalf("%+v", st.Decisions)
	}
}

func TestReloadKeepsFlows(t *testing.T) {
	i, _ := newTestInspector(t, noSynFlood(baseConfig(ModeMitigate)))
	x := &conn{t: t, i: i, c: cli4, s: srv4, cp: 40000, sp: 80, cSeq: 1000, sSeq: 9000}
	x.open()
	if err := i.Reload(Config{Enabled: true}); err == nil {
		t.Fatal("invalid reload accepted")
	}
	c := baseConfig(ModeMitigate)
	c.Rules[0].OutOfState.Rate = 5
	if err := i.Reload(c); err != nil {
		t.Fatal(err)
	}
	if v := run(i, engine.Outer, x.fromClient(packet.ACK, nil).frame()).Verdict; v != engine.Forward {
		t.Fatalf("after reload: %v", v)
	}
	if n := len(i.Flows(FlowFilter{})); n != 1 {
		t.Fatalf("%d flows", n)
	}
	if i.reloads[0].Load() != 2 || i.reloads[1].Load() != 1 {
		t.Fatal("reload counters")
	}
}

func TestCollector(t *testing.T) {
	i, _ := newTestInspector(t, baseConfig(ModeMitigate))
	run(i, engine.Outer, ackFlood(cli4, srv4, 1).frame())
	reg := prometheus.NewPedanticRegistry() // checks Collect against Describe
	if err := reg.Register(i.Collector()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, mf := range mfs {
		got[mf.GetName()] = len(mf.GetMetric())
		if mf.GetName() == "xskgate_tcp_decisions_total" {
			m := mf.GetMetric()[0]
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["reason"] != "not_found" || labels["outcome"] != "drop" || labels["protection"] != "out_of_state" || m.GetCounter().GetValue() != 1 {
				t.Fatalf("decision %v", m)
			}
		}
	}
	if got["xskgate_tcp_decisions_total"] != 1 || got["xskgate_syncookies_total"] != numCookie || got["xskgate_synproxy_events_total"] != numProxy || got["xskgate_malformed_frames_total"] != int(packet.NumErrors)-1 {
		t.Fatalf("families %v", got)
	}
}

// TestInspectChunks: a batch longer than a chunk, mixing segments of
// tracked flows (several of one flow), out-of-state ACKs, non-TCP and
// malformed frames, is judged exactly as the same frames one at a time.
func TestInspectChunks(t *testing.T) {
	cfg := noSynFlood(baseConfig(ModeMitigate))
	batch, single := mustInspector(t, cfg), mustInspector(t, cfg)
	var frames [][]byte
	for k := range 60 {
		for _, i := range []*Inspector{batch, single} {
			x := &conn{t: t, i: i, c: cli4, s: srv4, cp: uint16(20000 + k), sp: 443, cSeq: 1000, sSeq: 9000}
			x.open()
			if i == batch {
				frames = append(frames, x.fromClient(packet.ACK, nil).frame())
				frames = append(frames, x.fromClient(packet.ACK|packet.PSH, make([]byte, 100)).frame())
			}
		}
		if k%5 == 0 {
			stray := &conn{c: cli4, s: srv4, cp: uint16(40000 + k), sp: 443, cSeq: 7, sSeq: 7}
			frames = append(frames, stray.fromClient(packet.ACK, nil).frame(), []byte{1, 2, 3})
		}
	}
	if len(frames) <= 2*chunk {
		t.Fatalf("only %d frames", len(frames))
	}
	pkts := make([]engine.Packet, len(frames))
	for k, f := range frames {
		pkts[k] = engine.Packet{Data: append([]byte(nil), f...), Len: uint32(len(f)), Verdict: engine.Forward}
	}
	batch.Inspect(0, engine.Outer, pkts)
	for k, f := range frames {
		if got, want := pkts[k].Verdict, run(single, engine.Outer, f).Verdict; got != want {
			t.Fatalf("frame %d: %v in a batch, %v alone", k, got, want)
		}
	}
	if b, s := batch.Stats(), single.Stats(); !reflect.DeepEqual(b.Decisions, s.Decisions) || !reflect.DeepEqual(b.Malformed, s.Malformed) {
		t.Fatalf("batch %+v %+v, single %+v %+v", b.Decisions, b.Malformed, s.Decisions, s.Malformed)
	}
}

func mustInspector(t *testing.T, cfg Config) *Inspector {
	i, _ := newTestInspector(t, cfg)
	return i
}
