package xdpprog

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// FuzzFirstLine runs the first line's parser and stages (BPF_PROG_RUN) on
// arbitrary frames to a scope that is out of state and challenged, and
// checks what may come out: a drop, the frame handed on unchanged behind
// its record, or a cookie SYN-ACK that decodes with valid checksums and
// answers the SYN it replaced.
func FuzzFirstLine(f *testing.F) {
	requireRoot(f)
	p := loadOpts(f, 1, Options{Carrier: CarrierHead, FirstLine: true, Flows: 64})
	fl := p.FirstLine()
	if err := fl.Configure(FirstLineConfig{Stages: AllStages, Key0: 3, Key1: 4, MSS4: 1460, MSS6: 1440, WScale: 7, SACK: true, HasAllow: true, HasBlock: true, HasPenalty: true}); err != nil {
		f.Fatal(err)
	}
	for _, pr := range []string{"198.18.0.0/15", "2001:2::/48"} {
		if err := fl.Set(Scopes, netip.MustParsePrefix(pr), ScopeOutOfState|ScopeChallenge); err != nil {
			f.Fatal(err)
		}
	}
	for _, fam := range families {
		for _, s := range minimalSYNs(fam) {
			f.Add(padded(tcpFrame(f, s)))
		}
		f.Add(tcpFrame(f, linuxSYN(fam, 1)))
		f.Add(tcpFrame(f, ack(fam, fam.client)))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 14 || len(in) > 1500 {
			return
		}
		out := make([]byte, len(in)+256)
		opts := &ebpf.RunOptions{Data: in, DataOut: out, Repeat: 1, Context: xdpMd{DataEnd: uint32(len(in))}}
		ret, err := p.Raw().Run(opts)
		if err != nil {
			t.Fatalf("BPF_PROG_RUN: %v", err)
		}
		out = opts.DataOut
		switch ret {
		case xdpDropRet:
		case xdpPassRet:
			if len(out) != len(in)+MetaSize || !bytes.Equal(out[MetaSize:], in) {
				t.Fatalf("handed on a changed frame: %x -> %x", in, out)
			}
		case xdpTxRet:
			checkSYNACK(t, in, out)
		default:
			t.Fatalf("returned %d", ret)
		}
	})
}

// checkSYNACK checks that out is a valid cookie SYN-ACK answering the SYN
// in.
func checkSYNACK(t *testing.T, in, out []byte) {
	t.Helper()
	syn := gopacket.NewPacket(in, layers.LayerTypeEthernet, gopacket.Default)
	sa := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
	if el := sa.ErrorLayer(); el != nil {
		t.Fatalf("SYN-ACK %x does not decode: %v", out, el.Error())
	}
	st, ok1 := syn.Layer(layers.LayerTypeTCP).(*layers.TCP)
	at, ok2 := sa.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if !ok1 || !ok2 {
		t.Fatalf("not TCP: %x -> %x", in, out)
	}
	if !st.SYN || st.ACK || st.RST || st.FIN || !at.SYN || !at.ACK || at.Ack != st.Seq+1 ||
		at.SrcPort != st.DstPort || at.DstPort != st.SrcPort || len(out) > 14+40+20+12 {
		t.Fatalf("answer %+v to %+v", at, st)
	}
	fam := families[0]
	if sa.Layer(layers.LayerTypeIPv6) != nil {
		fam = families[1]
	}
	// The addresses come from the SYN, not the family's: check swapped.
	var src, dst netip.Addr
	if ip, ok := syn.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		src, _ = netip.AddrFromSlice(ip.SrcIP.To4())
		dst, _ = netip.AddrFromSlice(ip.DstIP.To4())
	} else if ip, ok := syn.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
	}
	fam.client, fam.server = src, dst
	checkChecksums(t, sa, fam)
}
