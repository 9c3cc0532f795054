package xdpprog

import (
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

const (
	xdpDropRet = 1
	xdpTxRet   = 3
)

// seg describes a TCP segment for tcpFrame.
type seg struct {
	src, dst      netip.Addr
	sport, dport  uint16
	syn, ack, rst bool
	seq, ackNum   uint32
	opts          []layers.TCPOption
	payload       []byte
}

// tcpFrame builds an Ethernet/IPv4 or IPv6/TCP frame with valid checksums.
func tcpFrame(t testing.TB, s seg) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport), Seq: s.seq, Ack: s.ackNum,
		SYN: s.syn, ACK: s.ack, RST: s.rst, Window: 64240, Options: s.opts}
	var ls []gopacket.SerializableLayer
	if s.src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: s.src.AsSlice(), DstIP: s.dst.AsSlice(), Flags: layers.IPv4DontFragment}
		tcp.SetNetworkLayerForChecksum(ip)
		ls = []gopacket.SerializableLayer{eth, ip, tcp}
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: s.src.AsSlice(), DstIP: s.dst.AsSlice()}
		tcp.SetNetworkLayerForChecksum(ip)
		ls = []gopacket.SerializableLayer{eth, ip, tcp}
	}
	ls = append(ls, gopacket.Payload(s.payload))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// firstLineProgram loads the head variant (the kernel here refuses meta)
// with a first line, configured with every stage on except the monitor.
func firstLineProgram(t *testing.T, monitor Stage) (*Program, *FirstLine) {
	t.Helper()
	p := loadOpts(t, 1, Options{Carrier: CarrierHead, FirstLine: true, Flows: 1024})
	f := p.FirstLine()
	if f == nil {
		t.Fatal("no first line")
	}
	if err := f.Configure(FirstLineConfig{Stages: AllStages, Monitor: monitor, Key0: 0x0123456789abcdef, Key1: 0xfedcba9876543210,
		MSS4: 1460, MSS6: 1440, Window: 0, WScale: 7, SACK: true, HasAllow: true, HasBlock: true, HasPenalty: true}); err != nil {
		t.Fatal(err)
	}
	return p, f
}

func runFrame(t *testing.T, p *Program, frame []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(frame)+256)
	opts := &ebpf.RunOptions{Data: frame, DataOut: out, Repeat: 1, Context: xdpMd{DataEnd: uint32(len(frame))}}
	ret, err := p.Raw().Run(opts)
	if err != nil {
		t.Fatalf("BPF_PROG_RUN: %v", err)
	}
	return ret, opts.DataOut
}

var (
	client4 = netip.MustParseAddr("198.18.0.1")
	server4 = netip.MustParseAddr("198.18.0.2")
	other4  = netip.MustParseAddr("198.19.0.9")
	client6 = netip.MustParseAddr("2001:2::1")
	server6 = netip.MustParseAddr("2001:2::2")
	other6  = netip.MustParseAddr("2001:2::99")
)

type family struct {
	name                  string
	client, server, other netip.Addr
	bits                  int
}

var families = []family{{"ipv4", client4, server4, other4, 32}, {"ipv6", client6, server6, other6, 128}}

func ack(f family, src netip.Addr) seg {
	return seg{src: src, dst: f.server, sport: 40000, dport: 80, ack: true, seq: 1000, ackNum: 2000}
}

func TestFirstLineStages(t *testing.T) {
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			p, f := firstLineProgram(t, 0)
			host := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, fam.bits) }
			want := func(name string, s seg, ret uint32) {
				t.Helper()
				if got, _ := runFrame(t, p, tcpFrame(t, s)); got != ret {
					t.Fatalf("%s: returned %d, want %d", name, got, ret)
				}
			}
			want("nothing configured", ack(fam, fam.client), xdpPassRet)

			if err := f.Set(Blocklist, host(fam.other), 1); err != nil {
				t.Fatal(err)
			}
			want("blocked source", ack(fam, fam.other), xdpDropRet)
			want("other source", ack(fam, fam.client), xdpPassRet)
			if err := f.Set(Allowlist, host(fam.other), 1); err != nil {
				t.Fatal(err)
			}
			want("allowlisted beats blocked", ack(fam, fam.other), xdpPassRet)
			if err := f.Replace(Allowlist, nil); err != nil {
				t.Fatal(err)
			}
			if err := f.Replace(Blocklist, nil); err != nil {
				t.Fatal(err)
			}
			want("lists emptied", ack(fam, fam.other), xdpPassRet)

			now := ktime(t)
			if err := f.Penalize(fam.other, now+60e9); err != nil {
				t.Fatal(err)
			}
			want("penalized source", ack(fam, fam.other), xdpDropRet)
			if err := f.Penalize(fam.other, now-1); err != nil {
				t.Fatal(err)
			}
			want("penalty expired", ack(fam, fam.other), xdpPassRet)

			if err := f.Set(Scopes, host(fam.server), ScopeOutOfState); err != nil {
				t.Fatal(err)
			}
			want("out of state, no flow", ack(fam, fam.client), xdpDropRet)
			syn := ack(fam, fam.client)
			syn.ack, syn.syn = false, true
			want("a SYN is not out of state", syn, xdpPassRet)
			toOther := ack(fam, fam.client)
			toOther.dst = fam.other
			want("destination outside the scope", toOther, xdpPassRet)
			var b FlowBatch
			b.Add(Flow{Src: fam.client, Dst: fam.server, SrcPort: 40000, DstPort: 80})
			if err := f.AddFlows(&b); err != nil {
				t.Fatal(err)
			}
			want("tracked flow", ack(fam, fam.client), xdpPassRet)
			rev := ack(fam, fam.client)
			rev.sport, rev.dport = 80, 40000
			want("another tuple", rev, xdpDropRet)
			kept, deleted, err := f.SweepFlows(func(Flow) bool { return false })
			if err != nil || kept != 0 || deleted != 1 {
				t.Fatalf("SweepFlows = %d, %d, %v; want 0 kept, 1 deleted", kept, deleted, err)
			}
			want("flow swept", ack(fam, fam.client), xdpDropRet)
			sc, err := f.Scope(host(fam.server))
			if err != nil || sc.OutOfState != 3 {
				t.Fatalf("scope counts %+v, %v; want 3 out-of-state", sc, err)
			}
			if err := f.Set(Scopes, host(fam.server), 0); err != nil {
				t.Fatal(err)
			}
			want("scope calm again", ack(fam, fam.client), xdpPassRet)

			c, err := f.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if c.BlockDrop != 1 || c.AllowPass != 1 || c.PenaltyDrop != 1 || c.OutOfStateDrop != 3 {
				t.Fatalf("counters %+v", c)
			}
		})
	}
}

// TestFirstLineMonitor: in monitor mode every stage counts what it would
// do and drops nothing.
func TestFirstLineMonitor(t *testing.T) {
	p, f := firstLineProgram(t, AllStages)
	fam := families[0]
	host := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, 32) }
	must(t, f.Set(Blocklist, host(fam.other), 1))
	must(t, f.Penalize(fam.other, ktime(t)+60e9))
	must(t, f.Set(Scopes, host(fam.server), ScopeOutOfState|ScopeChallenge))
	syn := ack(fam, fam.client)
	syn.ack, syn.syn = false, true
	for _, s := range []seg{ack(fam, fam.other), ack(fam, fam.client), syn} {
		if ret, _ := runFrame(t, p, tcpFrame(t, s)); ret != xdpPassRet {
			t.Fatalf("monitor mode returned %d for %+v", ret, s)
		}
	}
	c, err := f.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.BlockWould != 1 || c.PenaltyWould == 0 || c.OutOfStateWould == 0 || c.CookieWould != 1 ||
		c.BlockDrop+c.PenaltyDrop+c.OutOfStateDrop+c.CookieSent != 0 {
		t.Fatalf("counters %+v", c)
	}
}

// TestFirstLineMalformed: what the first line cannot parse goes on to
// user space (which parses everything), never dropped by a stage.
func TestFirstLineMalformed(t *testing.T) {
	p, f := firstLineProgram(t, 0)
	must(t, f.Set(Scopes, netip.MustParsePrefix("198.18.0.0/15"), ScopeOutOfState))
	must(t, f.Set(Scopes, netip.MustParsePrefix("2001:2::/48"), ScopeOutOfState))
	for _, fam := range families {
		full := tcpFrame(t, ack(fam, fam.client))
		l4 := 14 + 20
		if fam.name == "ipv6" {
			l4 = 14 + 40
		}
		cases := map[string][]byte{
			"truncated TCP header": full[:l4+10],
			"truncated IP header":  full[:20],
			"Ethernet only":        full[:14],
		}
		short := append([]byte(nil), full...)
		ver := append([]byte(nil), full...)
		if fam.name == "ipv4" {
			short[14+2], short[14+3] = 0, 32 // total length cuts the TCP header
			ver[14] = 0x25                   // version 2
		} else {
			short[14+4], short[14+5] = 0, 12 // payload length cuts the TCP header
			ver[14] = 0x40                   // version 4
		}
		cases["IP length shorter than the headers"] = short
		cases["wrong IP version"] = ver
		if fam.name == "ipv4" {
			opt := append([]byte(nil), full...)
			opt[14] = 0x46 // IHL 6: options
			cases["IPv4 options"] = opt
			frag := append([]byte(nil), full...)
			frag[14+6] |= 0x20 // MF
			cases["fragment"] = frag
		} else {
			ext := append([]byte(nil), full...)
			ext[14+6] = 0 // next header: hop-by-hop
			cases["extension header"] = ext
		}
		for name, fr := range cases {
			if ret, _ := runFrame(t, p, fr); ret != xdpPassRet {
				t.Errorf("%s %s: returned %d, want XDP_PASS (on to user space)", fam.name, name, ret)
			}
		}
	}
	if c, _ := f.Counters(); c.NotParsed == 0 || c.OutOfStateDrop != 0 {
		t.Fatalf("counters %+v", c)
	}
}

// TestFirstLineCookieSYNACK: a SYN to a challenged scope is answered in
// XDP with a SYN-ACK that gopacket decodes with valid checksums, swapped
// addresses and ports, ack = isn+1, the proxy's options; a pure ACK that
// returns the cookie passes the out-of-state stage, a forged one does not.
func TestFirstLineCookieSYNACK(t *testing.T) {
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			p, f := firstLineProgram(t, 0)
			must(t, f.Set(Scopes, netip.PrefixFrom(fam.server, fam.bits), ScopeChallenge|ScopeOutOfState))
			syn := seg{src: fam.client, dst: fam.server, sport: 40001, dport: 443, syn: true, seq: 0x11223344,
				opts: linuxSYNOpts()}
			ret, out := runFrame(t, p, tcpFrame(t, syn))
			if ret != xdpTxRet {
				t.Fatalf("returned %d, want XDP_TX", ret)
			}
			pk := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
			if el := pk.ErrorLayer(); el != nil {
				t.Fatalf("SYN-ACK does not decode: %v", el.Error())
			}
			tcp := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if !tcp.SYN || !tcp.ACK || tcp.RST || tcp.FIN || tcp.Ack != syn.seq+1 || tcp.SrcPort != 443 || tcp.DstPort != 40001 || tcp.Window != 0 {
				t.Fatalf("SYN-ACK %+v", tcp)
			}
			checkChecksums(t, pk, fam)
			var mss, ws, sack bool
			for _, o := range tcp.Options {
				switch o.OptionType {
				case layers.TCPOptionKindMSS:
					mss = true
				case layers.TCPOptionKindWindowScale:
					ws = o.OptionData[0] == 7
				case layers.TCPOptionKindSACKPermitted:
					sack = true
				}
			}
			if !mss || !ws || !sack {
				t.Fatalf("options %v: want MSS, window scale 7 and SACK permitted", tcp.Options)
			}
			// The client's ACK returning the cookie passes; one off does not.
			good := seg{src: fam.client, dst: fam.server, sport: 40001, dport: 443, ack: true, seq: syn.seq + 1, ackNum: tcp.Seq + 1}
			if ret, _ := runFrame(t, p, tcpFrame(t, good)); ret != xdpPassRet {
				t.Fatalf("cookie ACK returned %d, want XDP_PASS (on to the proxy)", ret)
			}
			bad := good
			bad.ackNum ^= 1 << 20
			if ret, _ := runFrame(t, p, tcpFrame(t, bad)); ret != xdpDropRet {
				t.Fatalf("forged cookie ACK returned %d, want XDP_DROP", ret)
			}
			if c, _ := f.Counters(); c.CookieSent != 1 || c.OutOfStateDrop != 1 {
				t.Fatalf("counters %+v", c)
			}
		})
	}
}

// checkChecksums recomputes the IP and TCP checksums of pk with gopacket
// and compares them with what the program wrote.
func checkChecksums(t *testing.T, pk gopacket.Packet, fam family) {
	t.Helper()
	tcp := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
	got := tcp.Checksum
	var ls []gopacket.SerializableLayer
	if ip, ok := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		if !sameAddr(ip.SrcIP.To4(), fam.server) || !sameAddr(ip.DstIP.To4(), fam.client) {
			t.Fatalf("addresses %v -> %v not swapped", ip.SrcIP, ip.DstIP)
		}
		gotIP := ip.Checksum
		c := *ip
		tcp.SetNetworkLayerForChecksum(&c)
		ls = []gopacket.SerializableLayer{&c, tcp}
		defer func() {
			if c.Checksum != gotIP {
				t.Errorf("IPv4 checksum %#x, want %#x", gotIP, c.Checksum)
			}
		}()
	} else {
		ip := pk.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		if !sameAddr(ip.SrcIP, fam.server) || !sameAddr(ip.DstIP, fam.client) {
			t.Fatalf("addresses %v -> %v not swapped", ip.SrcIP, ip.DstIP)
		}
		c := *ip
		tcp.SetNetworkLayerForChecksum(&c)
		ls = []gopacket.SerializableLayer{&c, tcp}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	if tcp.Checksum != got {
		t.Errorf("TCP checksum %#x, want %#x", got, tcp.Checksum)
	}
}

// sameAddr compares an address gopacket decoded with want, as 4 or 16
// bytes: net.IP's String prints an IPv4-mapped IPv6 address (::ffff:a.b.c.d,
// which a SYN may carry) as a.b.c.d, netip.Addr's does not (found by
// FuzzFirstLine).
func sameAddr(ip net.IP, want netip.Addr) bool {
	a, ok := netip.AddrFromSlice(ip)
	return ok && a == want
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// ktime is the kernel's bpf_ktime_get_ns clock (CLOCK_MONOTONIC).
func ktime(t *testing.T) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

// TestFirstLineEmptyListsSkipped: a list the configuration says is empty
// is not looked up (a flood frame would pay for it): an entry there
// anyway matches nothing until the configuration says the list has
// entries. The Inspector sets the bits from its lists and its first
// penalty (protect: TestFirstLinePenaltyBox, TestFirstLineLists).
func TestFirstLineEmptyListsSkipped(t *testing.T) {
	p, f := firstLineProgram(t, 0)
	fam := families[0]
	host := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, 32) }
	must(t, f.Set(Blocklist, host(fam.client), 1))
	must(t, f.Penalize(fam.other, ktime(t)+60e9))
	must(t, f.Set(Allowlist, host(fam.server), 1)) // (a source elsewhere)
	cfg := FirstLineConfig{Stages: AllStages, Key0: 1, Key1: 2, MSS4: 1460, MSS6: 1440, WScale: 7, SACK: true}
	for _, tc := range []struct {
		name            string
		block, penalty  bool
		client, penalts uint32 // what the client's and the penalized source's ACKs get
	}{
		{"lists said empty", false, false, xdpPassRet, xdpPassRet},
		{"blocklist has entries", true, false, xdpDropRet, xdpPassRet},
		{"a source was penalized", false, true, xdpPassRet, xdpDropRet},
	} {
		c := cfg
		c.HasBlock, c.HasPenalty = tc.block, tc.penalty
		must(t, f.Configure(c))
		if got, _ := runFrame(t, p, tcpFrame(t, ack(fam, fam.client))); got != tc.client {
			t.Errorf("%s: blocklisted client's ACK returned %d, want %d", tc.name, got, tc.client)
		}
		if got, _ := runFrame(t, p, tcpFrame(t, ack(fam, fam.other))); got != tc.penalts {
			t.Errorf("%s: penalized source's ACK returned %d, want %d", tc.name, got, tc.penalts)
		}
	}
}

// TestFirstLineAllowBit: an allowlisted source skips the out-of-state drop
// only while the configuration says the allowlist has entries.
func TestFirstLineAllowBit(t *testing.T) {
	p, f := firstLineProgram(t, 0)
	fam := families[0]
	must(t, f.Set(Allowlist, netip.PrefixFrom(fam.client, 32), 1))
	must(t, f.Set(Scopes, netip.PrefixFrom(fam.server, 32), ScopeOutOfState))
	cfg := FirstLineConfig{Stages: AllStages, Key0: 1, Key1: 2, MSS4: 1460, MSS6: 1440, WScale: 7, SACK: true}
	for _, tc := range []struct {
		has  bool
		want uint32
	}{{true, xdpPassRet}, {false, xdpDropRet}} {
		c := cfg
		c.HasAllow = tc.has
		must(t, f.Configure(c))
		if got, _ := runFrame(t, p, tcpFrame(t, ack(fam, fam.client))); got != tc.want {
			t.Errorf("HasAllow %v: the allowlisted client's untracked ACK returned %d, want %d", tc.has, got, tc.want)
		}
	}
}
