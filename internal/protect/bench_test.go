package protect

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/flow"
	"github.com/xskgate/xskgate/internal/packet"
)

// BenchmarkInspectEstablished: a batch of 64 in-window ACKs of 64
// established flows, the common case under no attack.
func BenchmarkInspectEstablished(b *testing.B) {
	i, _ := newTestInspector(b, noSynFlood(baseConfig(ModeMitigate)))
	const n = 64
	frames := make([][]byte, n)
	for k := range n {
		x := &conn{i: i, c: cli4, s: srv4, cp: uint16(30000 + k), sp: 443, cSeq: 1000, sSeq: 9000}
		x.open()
		frames[k] = x.fromClient(packet.ACK, nil).frame()
		if v := run(i, engine.Outer, frames[k]).Verdict; v != engine.Forward {
			b.Fatal(v)
		}
	}
	pkts := make([]engine.Packet, n)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for k := range pkts {
			pkts[k] = engine.Packet{Data: frames[k], Len: uint32(len(frames[k])), Verdict: engine.Forward}
		}
		i.Inspect(0, engine.Outer, pkts)
	}
	b.StopTimer()
	if pkts[0].Verdict != engine.Forward {
		b.Fatal(pkts[0].Verdict)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/pkt")
}

// BenchmarkInspectACKFlood: out-of-state ACKs over threshold (dropped).
func BenchmarkInspectACKFlood(b *testing.B) {
	i, _ := newTestInspector(b, baseConfig(ModeMitigate))
	const n = 64
	frames := make([][]byte, n)
	for k := range n {
		frames[k] = ackFlood(cli4, srv4, uint32(k)).frame()
	}
	pkts := make([]engine.Packet, n)
	b.ReportAllocs()
	for b.Loop() {
		for k := range pkts {
			pkts[k] = engine.Packet{Data: frames[k], Len: uint32(len(frames[k])), Verdict: engine.Forward}
		}
		i.Inspect(0, engine.Outer, pkts)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/pkt")
}

// BenchmarkChallenge: a SYN turned into a cookie SYN-ACK in place.
func BenchmarkChallenge(b *testing.B) {
	c := baseConfig(ModeMitigate)
	c.SynProxy.ChallengeRate = 1e9
	c.SynProxy.ChallengeBurst = 1e9
	i, _ := newTestInspector(b, c)
	orig := synFrom(cli4, 1, 1).frame()
	buf := make([]byte, len(orig), 2048)
	pkts := make([]engine.Packet, 1)
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, orig)
		pkts[0] = engine.Packet{Data: buf[:len(orig)], Len: uint32(len(orig)), Verdict: engine.Forward}
		i.Inspect(0, engine.Outer, pkts)
	}
	if pkts[0].Verdict != engine.Bounce {
		b.Fatal(pkts[0].Verdict)
	}
}

func BenchmarkCookie(b *testing.B) {
	k := sipKey{1, 2}
	tp := tuple{cli4, srv4, 40000, 443}
	now := int64(time.Hour)
	var sink uint32
	b.ReportAllocs()
	for n := 0; b.Loop(); n++ {
		sink += k.makeCookie(&tp, uint32(n), cookieOpts{mssIdx: 3, wscale: 7, sack: true}, now)
	}
	_ = sink
}

// manyPrefixes protects n /28s of 198.18.0.0/16, one rule per /28, and
// lists n source /32s of 198.19.0.0/20 in the allow- and blocklists
// (none of them the client's), and returns it with the address of a
// server in the last /28.
func manyPrefixes(n int) (Config, netip.Addr) {
	c := Config{Enabled: true, Log: LogConfig{Quiet: true}}
	for k := range n {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(k >> 4), byte(k << 4)}), 28)
		c.Prefixes = append(c.Prefixes, p)
		c.Rules = append(c.Rules, Rule{Name: p.String(), Scope: p, Mode: ModeMitigate,
			SynFlood: SynFloodRule{Rate: 1e6, Burst: 1e6}})
		src := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(k >> 8), byte(k)}), 32)
		c.Allowlist = append(c.Allowlist, src)
		c.Blocklist = append(c.Blocklist, src)
	}
	last := c.Prefixes[n-1].Addr().As4()
	last[3] |= 2
	return c, netip.AddrFrom4(last)
}

// BenchmarkInspectPrefixes: BenchmarkInspectEstablished's batch of
// in-window ACKs with n protected prefixes, rules, allow- and blocklist
// entries, the server in the last prefix: what every packet pays for the
// lookups of its addresses.
func BenchmarkInspectPrefixes(b *testing.B) {
	for _, n := range []int{16, 4096} {
		b.Run(fmt.Sprintf("prefixes=%d", n), func(b *testing.B) {
			c, srv := manyPrefixes(n)
			i, _ := newTestInspector(b, c)
			const batch = 64
			frames := make([][]byte, batch)
			for k := range batch {
				x := &conn{i: i, c: cli4, s: srv, cp: uint16(30000 + k), sp: 443, cSeq: 1000, sSeq: 9000}
				x.open()
				frames[k] = x.fromClient(packet.ACK, nil).frame()
				if v := run(i, engine.Outer, frames[k]).Verdict; v != engine.Forward {
					b.Fatal(v)
				}
			}
			pkts := make([]engine.Packet, batch)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				for k := range pkts {
					pkts[k] = engine.Packet{Data: frames[k], Len: uint32(len(frames[k])), Verdict: engine.Forward}
				}
				i.Inspect(0, engine.Outer, pkts)
			}
			b.StopTimer()
			if st := i.Stats(); st.Count("ok", "pass", "pass") < uint64(batch) || st.Bypass["unprotected"] != 0 {
				b.Fatalf("not judged as tracked flows: %+v %+v", st.Decisions, st.Bypass)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/pkt")
		})
	}
}

// BenchmarkInspectManyFlows: batches of 64 in-window ACKs, each of a
// different one of 256K established flows in random order: the flow
// table (about 30 MB) is far larger than the caches, as on a busy gate or
// under a flood that fills it. The frames are copied into 64 buffers
// before each batch, as the kernel's copy leaves them in cache, from an
// array read in order (so their cost is the same for any tracker).
func BenchmarkInspectManyFlows(b *testing.B) {
	const flows, n = 1 << 18, 64
	tb, err := flow.New(flow.Config{Capacity: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	clk := &fakeClock{}
	clk.ns.Store(int64(100 * time.Second))
	i, err := New(noSynFlood(baseConfig(ModeMitigate)), Options{Workers: 1, Table: tb, Clock: clk.now})
	if err != nil {
		b.Fatal(err)
	}
	var frameLen int
	var store []byte
	for _, k := range rand.New(rand.NewPCG(1, 2)).Perm(flows) {
		c := netip.AddrFrom4([4]byte{198, 19, byte(k >> 8), byte(k)})
		x := &conn{i: i, c: c, s: srv4, cp: uint16(10000 + k>>16), sp: 443, cSeq: 1000, sSeq: 9000}
		x.open()
		f := x.fromClient(packet.ACK, nil).frame()
		if v := run(i, engine.Outer, f).Verdict; v != engine.Forward {
			b.Fatal(v)
		}
		frameLen = len(f)
		store = append(store, f...)
	}
	bufs := make([][]byte, n)
	for k := range bufs {
		bufs[k] = make([]byte, frameLen)
	}
	pkts := make([]engine.Packet, n)
	next := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for k := range pkts {
			copy(bufs[k], store[next*frameLen:])
			if next++; next == flows {
				next = 0
			}
			pkts[k] = engine.Packet{Data: bufs[k], Len: uint32(frameLen), Verdict: engine.Forward}
		}
		i.Inspect(0, engine.Outer, pkts)
	}
	b.StopTimer()
	if st := i.Stats(); st.Count("", "drop", "drop") != 0 {
		b.Fatalf("drops: %+v", st.Decisions)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/pkt")
}
