package packet

import "testing"

func BenchmarkParse(b *testing.B) {
	for _, bc := range []struct {
		name  string
		frame func(testing.TB) []byte
	}{
		{"ipv4-tcp-syn-options", frameIPv4TCPSYN},
		{"ipv6-tcp-ack", frameIPv6TCPACK},
		{"ipv4-udp", frameIPv4UDP},
		{"ipv6-udp", frameIPv6UDP},
		{"qinq-ipv6-tcp", frameQinQ},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := bc.frame(b)
			var p Packet
			b.ReportAllocs()
			for b.Loop() {
				if err := p.Parse(f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseError(b *testing.B) {
	f := tcpOpts(2, 3, 0, 1)
	var p Packet
	b.ReportAllocs()
	for b.Loop() {
		errSink = p.Parse(f)
	}
}

func BenchmarkTCPChecksum(b *testing.B) {
	f := frameIPv6TCPACK(b)
	var p Packet
	if err := p.Parse(f); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(p.IPTotalLen - p.IPHeaderLen))
	for b.Loop() {
		if !VerifyTCPChecksum(&p, f) {
			b.Fatal("bad checksum")
		}
	}
}
