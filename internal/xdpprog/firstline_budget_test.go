package xdpprog

import (
	"net/netip"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// cookieProgram loads a first line whose scopes are challenged, with the
// challenge budget rate/burst (0: none) and the growth refusals of
// testGrow. The budget is given as protect's limiter gives it: ns per
// cookie, and that times the burst.
func cookieProgram(t *testing.T, testGrow uint32, rate, burst uint32, userSpace bool) (*Program, *FirstLine) {
	t.Helper()
	p := loadOpts(t, 1, Options{Carrier: CarrierHead, FirstLine: true, Flows: 1024, testGrow: testGrow})
	f := p.FirstLine()
	must(t, f.Configure(cookieConfig(rate, burst, userSpace)))
	for _, fam := range families {
		must(t, f.Set(Scopes, netip.PrefixFrom(fam.server, fam.bits), ScopeChallenge))
	}
	return p, f
}

// cookieConfig is cookieProgram's configuration: every stage on, the
// challenge budget rate/burst, no exemption for passed sources.
func cookieConfig(rate, burst uint32, userSpace bool) FirstLineConfig {
	interval, tolerance := gcra(rate, burst)
	return FirstLineConfig{Stages: AllStages, Key0: 1, Key1: 2, MSS4: 1460, MSS6: 1440, WScale: 7, SACK: true,
		ChallengeInterval: interval, ChallengeTolerance: tolerance, CookieInUserSpace: userSpace}
}

// gcra is a GCRA's interval and tolerance in ns for rate/s and burst (0:
// no limit), as package protect computes them.
func gcra(rate, burst uint32) (interval, tolerance uint64) {
	if rate == 0 {
		return 0, 0
	}
	interval = uint64(1e9 / rate)
	return interval, interval * uint64(max(burst, 1))
}

// padded is frame padded with zeros to Ethernet's 60-byte minimum, as a
// NIC or veth delivers a short SYN.
func padded(frame []byte) []byte {
	for len(frame) < 60 {
		frame = append(frame, 0)
	}
	return frame
}

// minimalSYNs are the SYNs that need the frame to grow for the SYN-ACK:
// no options (54/74 bytes, padded to 60 for IPv4), MSS only (the
// 60-byte SYN of the bench's flood), and MSS + window scale.
func minimalSYNs(fam family) map[string]seg {
	base := seg{src: fam.client, dst: fam.server, sport: 40002, dport: 80, syn: true, seq: 0x01020304}
	mss := base
	mss.opts = []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}}}
	ws := base
	ws.opts = append(append([]layers.TCPOption{}, mss.opts...),
		layers.TCPOption{OptionType: layers.TCPOptionKindNop},
		layers.TCPOption{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{9}})
	return map[string]seg{"no options": base, "MSS only": mss, "MSS and window scale": ws}
}

// TestFirstLineCookieMinimalSYN: a SYN too short to hold the SYN-ACK is
// answered all the same, whether the frame grows at its tail or, where
// the driver leaves no tailroom (veth's copies of small skbs), at its
// head; and only when it can grow at neither end does it go to user
// space, counted as no_fit.
func TestFirstLineCookieMinimalSYN(t *testing.T) {
	for _, grow := range []struct {
		name string
		v    uint32
	}{{"tail", 0}, {"head", growNoTail}} {
		t.Run(grow.name, func(t *testing.T) {
			p, f := cookieProgram(t, grow.v, 0, 0, false)
			n := 0
			for _, fam := range families {
				for name, s := range minimalSYNs(fam) {
					in := padded(tcpFrame(t, s))
					ret, out := runFrame(t, p, in)
					if ret != xdpTxRet {
						t.Fatalf("%s %s (%d bytes): returned %d, want XDP_TX", fam.name, name, len(in), ret)
					}
					n++
					pk := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
					if el := pk.ErrorLayer(); el != nil {
						t.Fatalf("%s %s: SYN-ACK does not decode: %v", fam.name, name, el.Error())
					}
					eth := pk.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
					if eth.DstMAC.String() != "02:00:00:00:00:01" || eth.SrcMAC.String() != "02:00:00:00:00:02" {
						t.Fatalf("%s %s: MACs %v -> %v not swapped", fam.name, name, eth.SrcMAC, eth.DstMAC)
					}
					tcp := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
					if !tcp.SYN || !tcp.ACK || tcp.Ack != s.seq+1 || tcp.SrcPort != 80 || tcp.DstPort != 40002 {
						t.Fatalf("%s %s: SYN-ACK %+v", fam.name, name, tcp)
					}
					checkChecksums(t, pk, fam)
					l3 := 20
					if fam.name == "ipv6" {
						l3 = 40
					}
					wantOpts := 4 // MSS
					for _, o := range s.opts {
						if o.OptionType == layers.TCPOptionKindWindowScale {
							wantOpts += 4
						}
					}
					if len(out) != 14+l3+20+wantOpts {
						t.Fatalf("%s %s: SYN-ACK of %d bytes, want %d", fam.name, name, len(out), 14+l3+20+wantOpts)
					}
				}
			}
			if c, _ := f.Counters(); c.CookieSent != uint64(n) || c.CookieNoFit != 0 {
				t.Fatalf("counters %+v, want %d sent and no no_fit", c, n)
			}
		})
	}
	t.Run("neither", func(t *testing.T) {
		p, f := cookieProgram(t, growNone, 0, 0, false)
		for _, fam := range families {
			for name, s := range minimalSYNs(fam) {
				in := padded(tcpFrame(t, s))
				if ret, out := runFrame(t, p, in); ret != xdpPassRet || len(out) != len(in)+MetaSize {
					t.Fatalf("%s %s: returned %d with %d bytes, want XDP_PASS with the SYN and its record", fam.name, name, ret, len(out))
				}
			}
		}
		if c, _ := f.Counters(); c.CookieSent != 0 || c.CookieNoFit != 6 {
			t.Fatalf("counters %+v, want 6 no_fit", c)
		}
	})
}

// linuxSYN is a SYN with Linux's options: long enough for the SYN-ACK.
func linuxSYN(fam family, k int) seg {
	return seg{src: fam.client, dst: fam.server, sport: uint16(30000 + k), dport: 80, syn: true, seq: uint32(k) * 2654435761,
		opts: linuxSYNOpts()}
}

// linuxSYNOpts are the options of Linux's SYN: MSS 1460, SACK permitted,
// timestamps, window scale 7.
func linuxSYNOpts() []layers.TCPOption {
	return []layers.TCPOption{
		{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
		{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
		{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)},
		{OptionType: layers.TCPOptionKindNop},
		{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
	}
}

// budgetRate is one cookie a second: a test's runtime adds at most one or
// two to the burst.
const budgetRate = 1

// TestFirstLineBudgetOnlyForAnswers: the challenge budget pays for
// SYN-ACKs sent, not for SYNs the frame could not answer (which go to
// user space): those used to spend it, so the next SYN that fitted was
// dropped as over budget.
func TestFirstLineBudgetOnlyForAnswers(t *testing.T) {
	const burst = 2
	p, f := cookieProgram(t, growNone, budgetRate, burst, false)
	fam := families[0]
	small := minimalSYNs(fam)["MSS only"]
	for range 5 {
		if ret, _ := runFrame(t, p, padded(tcpFrame(t, small))); ret != xdpPassRet {
			t.Fatalf("a SYN that cannot grow returned %d, want XDP_PASS (on to user space)", ret)
		}
	}
	if ret, _ := runFrame(t, p, tcpFrame(t, linuxSYN(fam, 0))); ret != xdpTxRet {
		c, _ := f.Counters()
		t.Fatalf("the first SYN that fits returned %d, want XDP_TX: the budget went to SYNs never answered (%+v)", ret, c)
	}
	if c, _ := f.Counters(); c.CookieNoFit != 5 || c.CookieSent != 1 || c.CookieLimited != 0 {
		t.Fatalf("counters %+v", c)
	}
}

// onCPU runs fn on a thread pinned to cpu (BPF_PROG_RUN runs the program
// on the calling thread's CPU).
func onCPU(t *testing.T, cpu int, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // not unlocked: the thread dies with its affinity
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			t.Errorf("pin to CPU %d: %v", cpu, err)
			return
		}
		fn()
	}()
	<-done
}

// TestFirstLineBudgetAllCPUs: the challenge budget is the configured rate
// whatever CPU the SYNs arrive on. All SYNs on one CPU get the whole
// burst (a per-CPU split gave them burst/ncpu), and SYNs on another CPU
// then find it spent (one budget for all).
func TestFirstLineBudgetAllCPUs(t *testing.T) {
	requireRoot(t)
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	var online unix.CPUSet
	if err := unix.SchedGetaffinity(0, &online); err != nil || online.Count() < 2 || ncpu < 2 {
		t.Skipf("needs 2 CPUs to run the program on (possible %d, allowed %d)", ncpu, online.Count())
	}
	const burst = 20
	p, f := cookieProgram(t, 0, budgetRate, burst, false)
	fam := families[0]
	cpus := []int{}
	for c := 0; c < 1024 && len(cpus) < 2; c++ {
		if online.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	start := ktime(t)
	answered := make([]int, 2)
	for i, cpu := range cpus {
		onCPU(t, cpu, func() {
			for k := range 2 * burst {
				if ret, _ := runFrame(t, p, tcpFrame(t, linuxSYN(fam, 100*i+k))); ret == xdpTxRet {
					answered[i]++
				}
			}
		})
	}
	elapsed := float64(ktime(t)-start) / 1e9
	// A GCRA with tolerance burst/rate admits burst+1 at once, then rate
	// per second (protect.limiter's semantics).
	most := burst + 1 + int(elapsed*budgetRate) + 1
	c, _ := f.Counters()
	t.Logf("answered %v on CPUs %v in %.3fs; counters %+v", answered, cpus, elapsed, c)
	if answered[0] < burst+1 {
		t.Errorf("CPU %d answered %d of %d SYNs, want the whole burst (%d): the budget is split between CPUs", cpus[0], answered[0], 2*burst, burst+1)
	}
	if answered[0]+answered[1] > most {
		t.Errorf("answered %d in all, want at most %d (burst + 1 + rate x %.3fs): the budget is not shared", answered[0]+answered[1], most, elapsed)
	}
}

// TestFirstLineCookieInUserSpace: where XDP_TX does not work, the cookie
// stage passes SYNs within the challenge budget on to the user-space
// proxy, untouched, and drops the rest in XDP, counted.
func TestFirstLineCookieInUserSpace(t *testing.T) {
	const burst = 3
	p, f := cookieProgram(t, 0, budgetRate, burst, true)
	for _, fam := range families {
		in := padded(tcpFrame(t, minimalSYNs(fam)["MSS only"]))
		ret, out := runFrame(t, p, in)
		if ret != xdpPassRet || string(out[MetaSize:]) != string(in) {
			t.Fatalf("%s: returned %d, want XDP_PASS with the SYN as it came", fam.name, ret)
		}
	}
	passed, dropped := 2, 0
	for k := range 10 {
		switch ret, _ := runFrame(t, p, tcpFrame(t, linuxSYN(families[k%2], k))); ret {
		case xdpPassRet:
			passed++
		case xdpDropRet:
			dropped++
		default:
			t.Fatalf("returned %d, want XDP_PASS or XDP_DROP", ret)
		}
	}
	c, _ := f.Counters()
	if passed < burst+1 || passed > burst+3 || c.CookieToUser != uint64(passed) || c.CookieLimited != uint64(dropped) || c.CookieSent != 0 {
		t.Fatalf("%d passed, %d dropped; counters %+v: want burst+1 (%d) passed, the rest limited", passed, dropped, c, burst+1)
	}
}

// TestFirstLineCookieChecksumCarry: the SYN-ACK's checksums are right for
// addresses whose words overflow 32 bits when summed (the pseudo header's
// sum used to lose that carry in bpf_csum_diff's 32-bit seed: a checksum
// off by one for about half of all address pairs; found by FuzzFirstLine).
func TestFirstLineCookieChecksumCarry(t *testing.T) {
	p, f := cookieProgram(t, 0, 0, 0, false)
	// In memory (little-endian words) 198.19.255.250 is 0xfaff13c6 and
	// 198.18.0.200 0xc80012c6: their sum needs 33 bits.
	server := netip.MustParseAddr("198.18.0.200")
	must(t, f.Set(Scopes, netip.PrefixFrom(server, 32), ScopeChallenge))
	for _, fam := range []family{{"ipv4", netip.MustParseAddr("198.19.255.250"), server, netip.Addr{}, 32}} {
		for name, s := range minimalSYNs(fam) {
			ret, out := runFrame(t, p, padded(tcpFrame(t, s)))
			if ret != xdpTxRet {
				t.Fatalf("%s %s: returned %d", fam.name, name, ret)
			}
			checkChecksums(t, gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default), fam)
		}
	}
}
