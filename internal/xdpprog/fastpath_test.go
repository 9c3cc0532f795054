package xdpprog

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xskgate/xskgate/internal/packet"
)

const tcActRedirect, tcActShot = 7, 2

// fastFrame is an Ethernet/IPv4 or IPv6/TCP frame from src to dst with a
// complete checksum; opts are the TCP options.
func fastFrame(t testing.TB, src, dst netip.AddrPort, seq, ack uint32, opts []layers.TCPOption) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: seq, Ack: ack, ACK: true,
		Window: 1000, Options: opts}
	var ip gopacket.SerializableLayer
	if src.Addr().Is4() {
		ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		tcp.SetNetworkLayerForChecksum(ip4)
		ip = ip4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		tcp.SetNetworkLayerForChecksum(ip6)
		ip = ip6
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, tcp, gopacket.Payload(make([]byte, 100))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sack is a SACK option with one block (left, right).
func sack(left, right uint32) layers.TCPOption {
	d := make([]byte, 8)
	binary.BigEndian.PutUint32(d, left)
	binary.BigEndian.PutUint32(d[4:], right)
	return layers.TCPOption{OptionType: layers.TCPOptionKindSACK, OptionLength: 10, OptionData: d}
}

var nop = layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1}

// TestFastPathTranslate runs the tc program (BPF_PROG_RUN, whose skb comes
// from the loopback device, ifindex 1) on segments of an offloaded
// SYN-proxied flow: toward the server the ACK and SACK edges gain the
// offset, toward the client the sequence number loses it, and the checksum
// stays right, a SACK edge at an odd offset included. A segment of a flow
// not in the map is dropped and counted.
func TestFastPathTranslate(t *testing.T) {
	requireRoot(t)
	client := netip.MustParseAddrPort("198.18.0.1:40000")
	server := netip.MustParseAddrPort("198.18.0.2:443")
	client6 := netip.MustParseAddrPort("[2001:2::1]:40000")
	server6 := netip.MustParseAddrPort("[2001:2::2]:443")
	const delta = 0x9000_0001 // wraps
	for _, c := range []struct {
		name     string
		in       bool
		src, dst netip.AddrPort
		opts     []layers.TCPOption
	}{
		{"in, no options", true, client, server, nil},
		{"in, SACK aligned", true, client, server, []layers.TCPOption{nop, nop, sack(7000, 8000)}},
		{"in, SACK at an odd offset", true, client, server, []layers.TCPOption{nop, sack(7000, 8000), nop}},
		{"in, IPv6, SACK at an odd offset", true, client6, server6, []layers.TCPOption{nop, sack(0xffff_fff0, 0x10), nop}},
		{"out", false, server, client, []layers.TCPOption{nop, nop, sack(100, 200)}},
		{"out, IPv6", false, server6, client6, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			outer, inner := 1, 2 // the test skb's device is outer: in
			if !c.in {
				outer, inner = 2, 1
			}
			fp, err := LoadFastPath(outer, inner, 16)
			if err != nil {
				t.Fatal(err)
			}
			defer fp.Close()
			fl := Flow{Src: c.src.Addr(), Dst: c.dst.Addr(), SrcPort: c.src.Port(), DstPort: c.dst.Port()}
			if !c.in {
				fl = Flow{Src: c.dst.Addr(), Dst: c.src.Addr(), SrcPort: c.dst.Port(), DstPort: c.src.Port()}
			}
			in := fastFrame(t, c.src, c.dst, 5000, 6000, c.opts)
			run := func() (uint32, []byte) {
				out := make([]byte, len(in)+256)
				ret, err := fp.prog.Run(&ebpf.RunOptions{Data: in, DataOut: out, Repeat: 1})
				if err != nil {
					t.Fatal(err)
				}
				return ret, out[:len(in)]
			}
			if ret, _ := run(); ret != tcActShot {
				t.Fatalf("flow not in the map: tc verdict %d, want TC_ACT_SHOT", ret)
			}
			var b FastBatch
			b.Offload(fl, delta)
			if n, err := fp.Flush(&b, func(Flow) { t.Fatal("not added") }, func(Flow) bool { return true }); n != 1 || err != nil {
				t.Fatal(n, err)
			}
			ret, out := run()
			if ret != tcActRedirect {
				t.Fatalf("tc verdict %d, want TC_ACT_REDIRECT", ret)
			}
			var p packet.Packet
			if err := p.Parse(out); err != nil {
				t.Fatal(err)
			}
			if !packet.VerifyTCPChecksum(&p, out) {
				t.Errorf("checksum wrong after the rewrite")
			}
			seq, ack := uint32(5000), uint32(6000)
			if c.in {
				ack += delta
			} else {
				seq -= delta
			}
			if p.TCP.Seq != seq || p.TCP.Ack != ack {
				t.Errorf("seq %d ack %d, want %d %d", p.TCP.Seq, p.TCP.Ack, seq, ack)
			}
			pk := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
			tcp := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
			for k, o := range tcp.Options {
				if o.OptionType != layers.TCPOptionKindSACK {
					continue
				}
				want := c.opts[k].OptionData
				for e := 0; e < 8; e += 4 {
					w := binary.BigEndian.Uint32(want[e:])
					if c.in {
						w += delta
					}
					if got := binary.BigEndian.Uint32(o.OptionData[e:]); got != w {
						t.Errorf("SACK edge %d: %#x, want %#x", e/4, got, w)
					}
				}
			}
			fc, err := fp.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if fc.Lost != 1 || fc.InPackets+fc.OutPackets != 1 || fc.TranslateErrors != 0 {
				t.Errorf("counters %+v: want 1 lost, 1 forwarded", fc)
			}
		})
	}
}

// FuzzFastPath runs the tc program (BPF_PROG_RUN) on arbitrary frames with
// two SYN-proxied flows (IPv4, IPv6) offloaded, coming from outer, and
// checks what may come out: a frame left to the stack unchanged, a drop,
// or a redirect of a segment of an offloaded flow whose bytes changed
// only in the ACK (by the offset), the checksum and the options, with a
// checksum still right if it was.
func FuzzFastPath(f *testing.F) {
	requireRoot(f)
	fp, err := LoadFastPath(1, 2, 16)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { fp.Close() })
	const delta = 0x8000_0003
	flows := []struct{ src, dst netip.AddrPort }{
		{netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort("198.18.0.2:443")},
		{netip.MustParseAddrPort("[2001:2::1]:40000"), netip.MustParseAddrPort("[2001:2::2]:443")},
	}
	var b FastBatch
	for _, fl := range flows {
		b.Offload(Flow{Src: fl.src.Addr(), Dst: fl.dst.Addr(), SrcPort: fl.src.Port(), DstPort: fl.dst.Port()}, delta)
		f.Add(fastFrame(f, fl.src, fl.dst, 1, 2, nil))
		f.Add(fastFrame(f, fl.src, fl.dst, 1, 2, []layers.TCPOption{nop, sack(5, 6), nop}))
		f.Add(fastFrame(f, fl.src, fl.dst, 1, 2, []layers.TCPOption{nop, nop, sack(5, 6), {OptionType: layers.TCPOptionKindSACK, OptionLength: 2}}))
		f.Add(fastFrame(f, fl.dst, fl.src, 1, 2, nil)) // the reverse tuple: not offloaded from outer
	}
	if n, err := fp.Flush(&b, func(Flow) {}, func(Flow) bool { return true }); n != len(flows) || err != nil {
		f.Fatal(n, err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 14 || len(in) > 1500 {
			return
		}
		out := make([]byte, len(in)+256)
		opts := &ebpf.RunOptions{Data: in, DataOut: out, Repeat: 1}
		ret, err := fp.prog.Run(opts)
		if err != nil {
			// The kernel refuses frames shorter than an Ethernet header
			// and the like before running the program.
			return
		}
		out = opts.DataOut
		switch ret {
		case 0: // TC_ACT_OK
			if !bytes.Equal(out, in) {
				t.Fatalf("left to the stack changed: %x -> %x", in, out)
			}
		case tcActShot:
		case tcActRedirect:
			checkRedirected(t, in, out, delta)
		default:
			t.Fatalf("returned %d", ret)
		}
	})
}

// checkRedirected checks a redirected segment against the frame it was.
func checkRedirected(t *testing.T, in, out []byte, delta uint32) {
	t.Helper()
	if len(out) != len(in) {
		t.Fatalf("length %d -> %d", len(in), len(out))
	}
	l4 := 14 + 20
	if binary.BigEndian.Uint16(in[12:]) == 0x86dd {
		l4 = 14 + 40
	}
	doff := int(in[l4+12]>>4) * 4
	for k := range in {
		inAck := k >= l4+8 && k < l4+12
		inCsum := k >= l4+16 && k < l4+18
		inOpts := k >= l4+20 && k < l4+doff
		if in[k] != out[k] && !inAck && !inCsum && !inOpts {
			t.Fatalf("byte %d changed: %x -> %x", k, in, out)
		}
	}
	ack := binary.BigEndian.Uint32(in[l4+8:])
	if in[l4+13]&0x10 != 0 {
		ack += delta
	}
	if got := binary.BigEndian.Uint32(out[l4+8:]); got != ack {
		t.Fatalf("ack %#x, want %#x", got, ack)
	}
	var p packet.Packet
	if p.Parse(in) == nil && p.Proto == packet.ProtoTCP && packet.VerifyTCPChecksum(&p, in) {
		var q packet.Packet
		if err := q.Parse(out); err != nil || !packet.VerifyTCPChecksum(&q, out) {
			t.Fatalf("a right checksum went wrong (%v): %x -> %x", err, in, out)
		}
	}
}

// TestFastPathDrain: an offloaded flow's segment passes XDP (XDP_PASS,
// frame untouched, on to tc). Drained, XDP hands its segments to user
// space again (the record goes in front) while the tc program still
// redirects those XDP passed before; a sweep that no longer keeps it
// deletes it, and tc then drops (counted lost). A flow offloaded again
// after a drain passes XDP again.
func TestFastPathDrain(t *testing.T) {
	requireRoot(t)
	client := netip.MustParseAddrPort("198.18.0.1:40000")
	server := netip.MustParseAddrPort("198.18.0.2:443")
	fl := Flow{Src: client.Addr(), Dst: server.Addr(), SrcPort: client.Port(), DstPort: server.Port()}
	fp, err := LoadFastPath(1, 2, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	p := loadOpts(t, 1, Options{Carrier: CarrierHead, Fast: fp})
	in := fastFrame(t, client, server, 5000, 6000, nil)
	xdp := func() (passed bool) {
		ret, out, _ := runCtx(t, p, in, &xdpMd{DataEnd: uint32(len(in))})
		if ret != xdpPassRet {
			t.Fatalf("XDP verdict %d, want XDP_PASS (to tc, or no socket)", ret)
		}
		return bytes.Equal(out[:len(in)], in) // no record in front
	}
	tc := func() uint32 {
		out := make([]byte, len(in)+256)
		ret, err := fp.prog.Run(&ebpf.RunOptions{Data: in, DataOut: out, Repeat: 1})
		if err != nil {
			t.Fatal(err)
		}
		return ret
	}
	offload := func() {
		var b FastBatch
		b.Offload(fl, 0)
		if n, err := fp.Flush(&b, func(Flow) { t.Fatal("not added") }, func(Flow) bool { return true }); n != 1 || err != nil {
			t.Fatal(n, err)
		}
	}
	if xdp() {
		t.Fatal("a flow not offloaded passed XDP untouched")
	}
	offload()
	if !xdp() {
		t.Fatal("an offloaded flow did not pass XDP to the fast path")
	}
	var drained []Flow
	if n, err := fp.Drain(func(f Flow) { drained = append(drained, f) }); n != 1 || err != nil || len(drained) != 1 || drained[0] != fl {
		t.Fatalf("Drain = %d, %v; each saw %v", n, err, drained)
	}
	if xdp() {
		t.Fatal("a draining flow still passed XDP to the fast path")
	}
	if ret := tc(); ret != tcActRedirect {
		t.Fatalf("tc verdict %d for a draining flow's segment in flight, want TC_ACT_REDIRECT", ret)
	}
	offload()
	if !xdp() {
		t.Fatal("a flow offloaded again after a drain did not pass XDP")
	}
	if _, err := fp.Drain(func(Flow) {}); err != nil {
		t.Fatal(err)
	}
	if kept, err := fp.Sweep(func(Flow, int64) bool { return false }); kept != 0 || err != nil {
		t.Fatal(kept, err)
	}
	if ret := tc(); ret != tcActShot {
		t.Fatalf("tc verdict %d after the sweep, want TC_ACT_SHOT", ret)
	}
	if c, err := fp.Counters(); err != nil || c.Lost != 1 {
		t.Fatalf("counters %+v, %v: want 1 lost", c, err)
	}
}
