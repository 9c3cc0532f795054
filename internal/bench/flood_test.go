package bench

import (
	"net"
	"net/netip"
	"testing"

	"github.com/xskgate/xskgate/internal/packet"
)

// TestFloodFrames builds the flood frames, varies each one the way a ring
// slot is varied (in place, copy after copy) and checks every copy with
// the project's parser: valid IPv4 header and TCP checksums, flags and
// options, a source from 198.18.0.0/15 outside the lab's 198.18.0.0/24,
// a source port >= 1024, and the destination untouched.
func TestFloodFrames(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	dst := netip.MustParseAddr("198.18.0.2")
	bench := netip.MustParsePrefix("198.18.0.0/15")
	lab := netip.MustParsePrefix("198.18.0.0/24")
	for _, tc := range []struct {
		name  string
		frame []byte
		flags uint8
		opts  uint8 // options present
	}{
		{"syn", TCPSynFrame(mac, mac, dst), packet.SYN, packet.HasMSS},
		{"syn with Linux's options", TCPSynFrameLinux(mac, mac, dst), packet.SYN,
			packet.HasMSS | packet.HasSACKPerm | packet.HasTimestamps | packet.HasWScale},
		{"ack", TCPFloodAckFrame(mac, mac, dst), packet.ACK, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.frame
			var p packet.Packet
			check := func(k uint64) {
				t.Helper()
				if err := p.Parse(f); err != nil {
					t.Fatalf("copy %d: %v", k, err)
				}
				if len(f) < 60 || p.Proto != packet.ProtoTCP || p.Dst != dst || p.DstPort != FloodPortDst || p.TCP.Flags != tc.flags {
					t.Fatalf("copy %d: %d bytes, proto %d, %v -> %v:%d, flags %#x", k, len(f), p.Proto, p.Src, p.Dst, p.DstPort, p.TCP.Flags)
				}
				if !bench.Contains(p.Src) || lab.Contains(p.Src) || !IsFloodSource(p.Src) || p.SrcPort < 1024 {
					t.Fatalf("copy %d: source %v port %d", k, p.Src, p.SrcPort)
				}
				if p.Src != FloodSource(k) || p.SrcPort != FloodPort(k) {
					t.Fatalf("copy %d: source %v:%d, want %v:%d", k, p.Src, p.SrcPort, FloodSource(k), FloodPort(k))
				}
				if got, want := uint16(f[24])<<8|uint16(f[25]), packet.IPv4HeaderChecksum(f[14:34]); got != want {
					t.Fatalf("copy %d: IPv4 header checksum %#x, want %#x", k, got, want)
				}
				if !packet.VerifyTCPChecksum(&p, f) {
					t.Fatalf("copy %d: bad TCP checksum %#x, want %#x", k, p.TCP.Checksum, packet.TCPChecksum(&p, f))
				}
				if p.TCP.Opts.Has != tc.opts || (tc.opts&packet.HasMSS != 0 && p.TCP.Opts.MSS != 1460) {
					t.Fatalf("copy %d: options %+v", k, p.TCP.Opts)
				}
			}
			check(0)
			for k := uint64(1); k < 300000; k++ {
				Spoofer{}.Vary(f, k)
				check(k)
			}
		})
	}
}

// TestFloodSources: one cycle of the source sequence visits every flood
// source once.
func TestFloodSources(t *testing.T) {
	seen := make(map[netip.Addr]bool, floodCount)
	for k := uint64(0); k < floodCount; k++ {
		a := FloodSource(k)
		if seen[a] || !IsFloodSource(a) {
			t.Fatalf("source %d: %v (seen %v)", k, a, seen[a])
		}
		seen[a] = true
	}
	for _, a := range []string{"198.18.0.1", "198.18.0.2", "198.18.0.255", "198.20.0.0", "198.17.255.255"} {
		if IsFloodSource(netip.MustParseAddr(a)) {
			t.Errorf("%s taken for a flood source", a)
		}
	}
	for _, a := range []string{"198.18.1.0", "198.19.255.255"} {
		if !IsFloodSource(netip.MustParseAddr(a)) {
			t.Errorf("%s not a flood source", a)
		}
	}
}
