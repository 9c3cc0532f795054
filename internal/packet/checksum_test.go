package packet

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func TestChecksumRFC1071(t *testing.T) {
	// RFC 1071 section 3 example: the words sum to 0xddf2.
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	tests := []struct {
		name    string
		b       []byte
		initial uint32
		want    uint16
	}{
		{"rfc1071 example", b, 0, ^uint16(0xddf2)},
		{"odd length pads with zero", []byte{0xab}, 0, ^uint16(0xab00)},
		{"initial folds in", b[:2], 0x1fffe, ^uint16(0x0001)}, // 0x1ffff -> 0xffff+1 -> 0x0001
		{"empty", nil, 0, 0xffff},
		{"carry wraps", []byte{0xff, 0xff, 0x00, 0x01}, 0, ^uint16(0x0001)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Checksum(tt.b, tt.initial); got != tt.want {
				t.Errorf("Checksum = %#04x, want %#04x", got, tt.want)
			}
		})
	}
}

func TestChecksumsAgainstGopacket(t *testing.T) {
	oddPayload := func(tb testing.TB) []byte {
		ip := ip4(layers.IPProtocolTCP)
		return serialize(tb, eth(layers.EthernetTypeIPv4), ip, tcpACK(ip), gopacket.Payload("odd"))
	}
	oddPayload6 := func(tb testing.TB) []byte {
		ip := ip6(layers.IPProtocolTCP)
		return serialize(tb, eth(layers.EthernetTypeIPv6), ip, tcpSYN(ip), gopacket.Payload("odd6!"))
	}
	tests := []struct {
		name  string
		frame func(testing.TB) []byte
	}{
		{"ipv4 syn options", frameIPv4TCPSYN},
		{"ipv4 odd payload", oddPayload},
		{"ipv4 ip options", frameIPv4Options},
		{"ipv4 padded frame", framePadded},
		{"ipv6 ack", frameIPv6TCPACK},
		{"ipv6 odd payload", oddPayload6},
		{"qinq ipv6", frameQinQ},
		{"ipv4 udp (ip header only)", frameIPv4UDP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.frame(t)
			var p Packet
			if err := p.Parse(f); err != nil {
				t.Fatal(err)
			}
			if p.IPVersion == 4 {
				hdr := f[p.L3Off : p.L3Off+p.IPHeaderLen]
				if got, want := IPv4HeaderChecksum(hdr), binary.BigEndian.Uint16(hdr[10:]); got != want {
					t.Errorf("IPv4HeaderChecksum = %#04x, gopacket %#04x", got, want)
				}
				if Checksum(hdr, 0) != 0 {
					t.Errorf("Checksum over a valid IPv4 header is not 0")
				}
			}
			if p.Proto != ProtoTCP {
				if TCPChecksum(&p, f) != 0 || VerifyTCPChecksum(&p, f) {
					t.Errorf("TCP checksum helpers accept a non-TCP packet")
				}
				return
			}
			if got := TCPChecksum(&p, f); got != p.TCP.Checksum {
				t.Errorf("TCPChecksum = %#04x, gopacket %#04x", got, p.TCP.Checksum)
			}
			if !VerifyTCPChecksum(&p, f) {
				t.Errorf("VerifyTCPChecksum = false on a gopacket-built frame")
			}
			// Corrupting any single byte must be detected: XOR with 0x5a
			// changes a word by 0x5a or 0x5a00, never a multiple of 0xffff.
			for i := p.L4Off; i < p.L3Off+p.IPTotalLen; i++ {
				f[i] ^= 0x5a
				if VerifyTCPChecksum(&p, f) {
					t.Fatalf("corruption at offset %d not detected", i)
				}
				f[i] ^= 0x5a
			}
			// Padding beyond the IP length is not covered.
			f = append(f, 0xde, 0xad)
			if !VerifyTCPChecksum(&p, f) {
				t.Errorf("bytes beyond the IP length changed the checksum")
			}
		})
	}
}

// TestIncrementalUpdate checks that RFC 1624 incremental updates give the
// same result as recomputing the checksum from scratch, for the rewrites
// the SYN proxy performs.
func TestIncrementalUpdate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	t.Run("raw words", func(t *testing.T) {
		for range 2000 {
			b := make([]byte, 4+2*rng.IntN(40))
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			b[0] |= 1 // never all zero: then the full checksum is 0xffff, see RFC 1624 section 3
			old := Checksum(b, 0)
			i := 2 + 2*rng.IntN(len(b)/2-1) // leave word 0 alone
			from := binary.BigEndian.Uint16(b[i:])
			to := uint16(rng.Uint32())
			switch rng.IntN(4) { // bias towards the edge values
			case 0:
				to = 0
			case 1:
				to = 0xffff
			}
			binary.BigEndian.PutUint16(b[i:], to)
			if got, want := UpdateChecksum16(old, from, to), Checksum(b, 0); got != want {
				t.Fatalf("UpdateChecksum16(%#04x, %#04x, %#04x) = %#04x, full %#04x (data %x)", old, from, to, got, want, b)
			}
		}
	})

	type rewrite struct {
		name string
		off  func(p *Packet) int // offset of a 32-bit field in the frame
		ip   bool                // field is in the IPv4 header (address): both checksums change
	}
	rewrites := []rewrite{
		{"tcp seq", func(p *Packet) int { return p.L4Off + 4 }, false},
		{"tcp ack", func(p *Packet) int { return p.L4Off + 8 }, false},
		{"tcp ports", func(p *Packet) int { return p.L4Off }, false},
		{"ipv4 src", func(p *Packet) int { return p.L3Off + 12 }, true},
		{"ipv4 dst", func(p *Packet) int { return p.L3Off + 16 }, true},
		{"tcp timestamp option", func(p *Packet) int { return p.L4Off + 24 }, false},
	}
	for _, rw := range rewrites {
		t.Run(rw.name, func(t *testing.T) {
			for range 300 {
				ip := ip4(layers.IPProtocolTCP)
				ip.SrcIP = []byte{byte(rng.Uint32()), byte(rng.Uint32()), 1, 2}
				tcp := tcpACK(ip)
				tcp.Seq, tcp.Ack, tcp.Window = rng.Uint32(), rng.Uint32(), uint16(rng.Uint32())
				payload := make([]byte, rng.IntN(64))
				for i := range payload {
					payload[i] = byte(rng.Uint32())
				}
				f := serialize(t, eth(layers.EthernetTypeIPv4), ip, tcp, gopacket.Payload(payload))
				var p Packet
				if err := p.Parse(f); err != nil {
					t.Fatal(err)
				}
				off := rw.off(&p)
				from, to := binary.BigEndian.Uint32(f[off:]), rng.Uint32()
				oldTCP := p.TCP.Checksum
				oldIP := binary.BigEndian.Uint16(f[p.L3Off+10:])
				binary.BigEndian.PutUint32(f[off:], to)
				if err := p.Parse(f); err != nil { // re-parse: addresses live in p
					t.Fatal(err)
				}
				if got, want := UpdateChecksum32(oldTCP, from, to), TCPChecksum(&p, f); got != want {
					t.Fatalf("TCP: incremental %#04x, full %#04x", got, want)
				}
				if rw.ip {
					hdr := f[p.L3Off : p.L3Off+p.IPHeaderLen]
					if got, want := UpdateChecksum32(oldIP, from, to), IPv4HeaderChecksum(hdr); got != want {
						t.Fatalf("IPv4: incremental %#04x, full %#04x", got, want)
					}
				}
			}
		})
	}
}

func TestChecksumHelpersOnBadInput(t *testing.T) {
	var p Packet
	if TCPChecksum(&p, nil) != 0 || VerifyTCPChecksum(&p, nil) {
		t.Error("zero Packet accepted")
	}
	f := frameIPv4TCPSYN(t)
	if err := p.Parse(f); err != nil {
		t.Fatal(err)
	}
	if TCPChecksum(&p, f[:len(f)-1]) != 0 || VerifyTCPChecksum(&p, f[:len(f)-1]) {
		t.Error("frame shorter than the Packet describes accepted")
	}
	if IPv4HeaderChecksum([]byte{0x45}) != Checksum([]byte{0x45}, 0) {
		t.Error("short IPv4 header")
	}
}

// sum16 is the plain RFC 1071 loop, the reference for sum's wide path.
func sum16(b []byte, initial uint64) uint64 {
	s := initial
	for ; len(b) >= 2; b = b[2:] {
		s += uint64(b[0])<<8 | uint64(b[1])
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	return s
}

// TestSumWide: the 64-bit path folds to what the 16-bit loop does, for
// every length around its thresholds, random, all-zero and all-ones data
// (the cases where a ones'-complement sum has two zeros), and any initial
// sum.
func TestSumWide(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1600)
	for _, fill := range []string{"random", "zeros", "ones", "ff00"} {
		for i := range buf {
			switch fill {
			case "random":
				buf[i] = byte(rng.Uint32())
			case "zeros":
				buf[i] = 0
			case "ones":
				buf[i] = 0xff
			case "ff00":
				buf[i] = byte(0xff * (1 - i%2))
			}
		}
		for n := 0; n <= len(buf); n++ {
			if n > 200 && n < 1400 && n%37 != 0 {
				continue
			}
			for _, init := range []uint64{0, 1, 0xffff, 0x1fffe, rng.Uint64() >> 20} {
				b := buf[len(buf)-n:]
				if got, want := fold(sum(b, init)), fold(sum16(b, init)); got != want {
					t.Fatalf("%s, %d bytes, initial %#x: fold(sum) = %#04x, the 16-bit loop %#04x", fill, n, init, got, want)
				}
			}
		}
	}
}

// sumFourWords is sum as it was before the wide path: four 16-bit words
// per step (kept for BenchmarkSum's comparison).
func sumFourWords(b []byte, initial uint64) uint64 {
	s := initial
	for len(b) >= 8 {
		s += uint64(binary.BigEndian.Uint16(b[0:2])) + uint64(binary.BigEndian.Uint16(b[2:4])) +
			uint64(binary.BigEndian.Uint16(b[4:6])) + uint64(binary.BigEndian.Uint16(b[6:8]))
		b = b[8:]
	}
	return sum16(b, s)
}

// BenchmarkSum compares sum's wide path with the loops before it on a
// 1480-byte TCP segment, interleaved (run with -count 7).
func BenchmarkSum(b *testing.B) {
	seg := make([]byte, 1480)
	for i := range seg {
		seg[i] = byte(i * 7)
	}
	var sink uint64
	for _, c := range []struct {
		name string
		fn   func([]byte, uint64) uint64
	}{{"16-bit", sum16}, {"4-word (before)", sumFourWords}, {"wide", sum}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(seg)))
			for range b.N {
				sink += c.fn(seg, 0)
			}
		})
	}
	_ = sink
}
