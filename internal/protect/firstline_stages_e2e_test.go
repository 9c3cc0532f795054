package protect

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/xskgate/xskgate/internal/lab"
	"github.com/xskgate/xskgate/internal/packet"
	"github.com/xskgate/xskgate/internal/traffic"
	"github.com/xskgate/xskgate/internal/xdpprog"
)

// clientXDPPass attaches an XDP_PASS program to the client's eth0 for the
// test: it gives that veth NAPI, which frames sent back with XDP_TX from
// the gate's outer need (a NIC has it; a container's veth does not).
func clientXDPPass(t *testing.T, l *lab.Lab) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "xskgate_pass", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2 /* XDP_PASS */), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	var att link.Link
	if err := l.Do(l.ClientNS, func() error {
		var err error
		att, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: l.ClientIndex, Flags: link.XDPDriverMode})
		return err
	}); err != nil {
		t.Fatalf("attach XDP_PASS to the client's eth0: %v", err)
	}
	t.Cleanup(func() { att.Close() })
}

// spoofed is a source outside the lab's subnet, which no lab host owns.
var spoofed = netip.MustParseAddr("198.18.7.7")

func fromSpoofed(flags uint8) func(k int) tseg {
	return func(k int) tseg {
		x := uint32(k)*2654435761 + 777
		s := tseg{src: spoofed, dst: srv4, sport: uint16(1024 + k%60000), dport: port,
			seq: x, ack: x ^ 0x5a5a5a5a, flags: flags, win: 512, ws: -1}
		if flags == packet.SYN {
			s.ack, s.mss = 0, 1460
		}
		return s
	}
}

// TestFirstLinePenaltyBox: a source over its rule's per-source SYN
// threshold goes into the penalty box, and XDP drops everything from it,
// counted in the program's map, while legitimate clients keep working.
func TestFirstLinePenaltyBox(t *testing.T) {
	cfg := labConfig(ModeMitigate)
	for k := range cfg.Rules {
		cfg.Rules[k].SynFlood = SynFloodRule{Rate: 100000, Burst: 100000, PerSourceRate: 10, PerSourceBurst: 10, Action: ActionChallenge}
	}
	r := newRigFL(t, cfg, true)
	snd := newRawSender(t, r.l)
	snd.flood(t, r.l, 200, fromSpoofed(packet.SYN))
	waitFL(t, r, "the source is penalized", func(s FirstLineStats) bool { return s.Penalized >= 1 })
	// The controller tells the program to look the box up within a tick.
	waitFL(t, r, "XDP looks the penalty box up", func(s FirstLineStats) bool { return slices.Contains(s.Lookups, "penalty_box") })
	before, _ := r.i.FirstLineStats()
	snd.flood(t, r.l, 100, fromSpoofed(packet.ACK))
	st := waitFL(t, r, "XDP drops the penalized source", func(s FirstLineStats) bool { return s.PenaltyDrop >= before.PenaltyDrop+100 })
	t.Logf("penalty box: %d sources, %d frames dropped", st.Penalized, st.PenaltyDrop)
	r.exchange(t, 4, 1<<18) // the lab's own clients are not penalized
}

// TestFirstLineAllowlist: an allowlisted source skips the first line: its
// untracked ACKs to a scope XDP drops out of state go on to user space,
// counted as allowlist passes.
func TestFirstLineAllowlist(t *testing.T) {
	cfg := labConfig(ModeMitigate)
	cfg.Allowlist = []netip.Prefix{netip.PrefixFrom(spoofed, 32)}
	for k := range cfg.Rules {
		cfg.Rules[k].OutOfState = OutOfStateRule{Rate: 100, Burst: 200}
		cfg.Rules[k].SynFlood = SynFloodRule{Rate: 100000, Burst: 100000}
	}
	r := newRigFL(t, cfg, true)
	snd := newRawSender(t, r.l)
	snd.flood(t, r.l, 2000, floodACK(r.l))
	waitFL(t, r, "scope flagged out of state", func(s FirstLineStats) bool {
		return s.Flagged["198.18.0.2/32"]&xdpprog.ScopeOutOfState != 0
	})
	before, _ := r.i.FirstLineStats()
	snd.flood(t, r.l, 100, fromSpoofed(packet.ACK))
	st := waitFL(t, r, "allowlisted ACKs passed", func(s FirstLineStats) bool { return s.AllowPass >= before.AllowPass+100 })
	if st.OutOfStateDrop-before.OutOfStateDrop >= 100 {
		t.Errorf("allowlisted frames dropped out of state: %+v then %+v", before.FirstLineCounters, st.FirstLineCounters)
	}
}

// TestFirstLineMonitorFlood: with the first line in monitor mode, an
// out-of-state ACK flood is counted in XDP as what it would drop, and
// every frame goes on to user space (which, in mitigate mode, drops it).
func TestFirstLineMonitorFlood(t *testing.T) {
	cfg := labConfig(ModeMitigate)
	cfg.FirstLine.Mode = ModeMonitor
	for k := range cfg.Rules {
		cfg.Rules[k].OutOfState = OutOfStateRule{Rate: 100, Burst: 200}
		cfg.Rules[k].SynFlood = SynFloodRule{Rate: 100000, Burst: 100000}
	}
	r := newRigFL(t, cfg, true)
	snd := newRawSender(t, r.l)
	const n = 5000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		snd.flood(t, r.l, n, floodACK(r.l))
	}()
	r.exchange(t, 2, 1<<18)
	wg.Wait()
	st := waitFL(t, r, "monitor counts", func(s FirstLineStats) bool { return s.OutOfStateWould > 0 })
	deadline := time.Now().Add(10 * time.Second)
	// What user space judged of the flood: inbound segments without a
	// flow, dropped or passed within the rule's burst.
	userDrops := func() uint64 {
		var n uint64
		for _, d := range r.i.Stats().Decisions {
			if d.Dir == "inbound" && d.Reason == "not_found" {
				n += d.N
			}
		}
		return n
	}
	for userDrops()+r.kernelDrops() < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	us := userDrops()
	st, _ = r.i.FirstLineStats()
	t.Logf("monitor: XDP would drop %d, dropped %d; user space judged %d of %d (kernel lost %d)", st.OutOfStateWould, st.OutOfStateDrop, us, n, r.kernelDrops())
	if st.OutOfStateDrop+st.BlockDrop+st.PenaltyDrop+st.CookieSent+st.CookieLimited != 0 {
		t.Fatalf("monitor mode acted in XDP: %+v", st.FirstLineCounters)
	}
	if us+r.kernelDrops() < n {
		t.Errorf("user space saw %d of %d flood frames (kernel lost %d)", us, n, r.kernelDrops())
	}
}

// TestFirstLineReloadKeepsFlows: a reload rewrites the lists and scopes in
// the maps and keeps the flow map: a connection opened before the reload
// still works after it, while XDP drops untracked segments out of state.
func TestFirstLineReloadKeepsFlows(t *testing.T) {
	cfg := labConfig(ModeMitigate)
	for k := range cfg.Rules {
		cfg.Rules[k].OutOfState = OutOfStateRule{Rate: 100, Burst: 200}
		cfg.Rules[k].SynFlood = SynFloodRule{Rate: 100000, Burst: 100000}
	}
	r := newRigFL(t, cfg, true)
	// A connection opened now, used only after the reload.
	var c net.Conn
	if err := r.l.Do(r.l.ClientNS, func() error {
		var err error
		c, err = net.DialTimeout("tcp", netip.AddrPortFrom(r.l.ServerIP4, port).String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r.exchange(t, 2, 1<<16)
	fl := r.g.FirstLine()
	all := func(xdpprog.Flow) bool { return true }
	kept, _, err := fl.SweepFlows(all)
	if err != nil || kept < 3 {
		t.Fatalf("flow map holds %d flows (%v), want at least 3", kept, err)
	}
	c2 := labConfig(ModeMitigate)
	c2.Blocklist = []netip.Prefix{netip.PrefixFrom(spoofed, 32)}
	for k := range c2.Rules {
		c2.Rules[k].OutOfState = OutOfStateRule{Rate: 100, Burst: 200}
		c2.Rules[k].SynFlood = SynFloodRule{Rate: 100000, Burst: 100000}
	}
	if err := r.i.Reload(c2); err != nil {
		t.Fatal(err)
	}
	if n := fl.Len(xdpprog.Blocklist); n != 1 {
		t.Fatalf("blocklist holds %d prefixes after the reload, want 1", n)
	}
	after, _, err := fl.SweepFlows(all)
	if err != nil || after < kept {
		t.Fatalf("flow map holds %d flows after the reload (%v), %d before", after, err, kept)
	}
	snd := newRawSender(t, r.l)
	snd.flood(t, r.l, 2000, floodACK(r.l))
	waitFL(t, r, "scope flagged out of state", func(s FirstLineStats) bool {
		return s.Flagged["198.18.0.2/32"]&xdpprog.ScopeOutOfState != 0
	})
	snd.flood(t, r.l, 2000, floodACK(r.l))
	waitFL(t, r, "XDP drops out of state", func(s FirstLineStats) bool { return s.OutOfStateDrop > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if res := traffic.Exchange(ctx, c, 99, 1<<18, 1<<18); res.Err != nil {
		t.Fatalf("connection opened before the reload: %v", res.Err)
	}
	snd.flood(t, r.l, 50, fromSpoofed(packet.ACK))
	waitFL(t, r, "the reloaded blocklist drops", func(s FirstLineStats) bool { return s.BlockDrop >= 50 })
}
