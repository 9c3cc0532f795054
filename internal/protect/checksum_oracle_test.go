package protect

import (
	"fmt"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// The fuzz targets check the Inspector's checksums against gopacket's, an
// implementation independent of package packet.

// csum is one checksum of a frame as gopacket sees it: the layer (by type
// and rank among layers of that type, so tunnels do not collide), where its
// checksum field is in the frame, and whether it verifies.
type csum struct {
	layer string
	off   int // offset of the checksum field in the frame
	valid bool
	right uint16 // the value that would verify
}

// checksums decodes frame with gopacket and verifies every IPv4 header,
// TCP, UDP, ICMPv4 and ICMPv6 checksum in it (ICMP errors' quotes are not
// decoded: the ICMP checksum covers them). Layers gopacket cannot decode
// are not listed.
func checksums(frame []byte) []csum {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	var out []csum
	var netl gopacket.NetworkLayer
	rank := map[gopacket.LayerType]int{}
	off := 0
	for _, l := range p.Layers() {
		start := off
		off += len(l.LayerContents())
		var res gopacket.ChecksumVerificationResult
		var err error
		field := 0
		switch x := l.(type) {
		case *layers.IPv4:
			netl = x
			err, res = x.VerifyChecksum()
			field = 10
		case *layers.IPv6:
			netl = x
			continue
		case *layers.TCP:
			if netl == nil || x.SetNetworkLayerForChecksum(netl) != nil {
				continue
			}
			err, res = x.VerifyChecksum()
			field = 16
		case *layers.UDP:
			if netl == nil || x.SetNetworkLayerForChecksum(netl) != nil {
				continue
			}
			err, res = x.VerifyChecksum()
			field = 6
		case *layers.ICMPv4:
			err, res = x.VerifyChecksum()
			field = 2
		case *layers.ICMPv6:
			if netl == nil || x.SetNetworkLayerForChecksum(netl) != nil {
				continue
			}
			err, res = x.VerifyChecksum()
			field = 2
		default:
			continue
		}
		if err != nil || start+field+2 > len(frame) {
			continue
		}
		t := l.LayerType()
		out = append(out, csum{layer: fmt.Sprintf("%v#%d", t, rank[t]), off: start + field, valid: res.Valid, right: uint16(res.Correct)})
		rank[t]++
	}
	return out
}

// fixChecksums makes every checksum checksums finds valid, innermost
// first (an outer UDP checksum covers what it carries).
func fixChecksums(frame []byte) {
	for k := len(checksums(frame)) - 1; k >= 0; k-- {
		// Decoded again each time: an outer sum covers inner fields.
		if now := checksums(frame); k < len(now) && !now[k].valid {
			frame[now[k].off], frame[now[k].off+1] = byte(now[k].right>>8), byte(now[k].right)
		}
	}
}

// checksumsKept reports the first checksum valid in before that is missing
// or invalid in after ("" if none): a frame the Inspector rewrites must
// keep every checksum that held when it arrived.
func checksumsKept(before, after []byte) string {
	got := map[string]bool{}
	for _, c := range checksums(after) {
		got[c.layer] = c.valid
	}
	for _, c := range checksums(before) {
		if v, ok := got[c.layer]; c.valid && (!ok || !v) {
			return fmt.Sprintf("%s checksum valid on arrival, %s after the Inspector", c.layer, map[bool]string{false: "missing", true: "invalid"}[ok])
		}
	}
	return ""
}

// checksumsValid reports the first checksum of a frame the Inspector made
// (a bounce, a spare frame) that does not verify, or says it found none.
func checksumsValid(frame []byte) string {
	cs := checksums(frame)
	if len(cs) == 0 {
		return "no checksummed layer gopacket can decode"
	}
	for _, c := range cs {
		if !c.valid {
			return c.layer + " checksum invalid"
		}
	}
	return ""
}

// TestChecksumOracle: the fuzz oracle sees a broken checksum, and
// fixChecksums repairs every one.
func TestChecksumOracle(t *testing.T) {
	for _, f := range [][]byte{synFrom(cli4, 1, 1).frame(), ackFlood(cli6, srv6, 3).frame()} {
		if msg := checksumsValid(f); msg != "" {
			t.Fatalf("built frame: %s", msg)
		}
		bad := append([]byte(nil), f...)
		bad[len(bad)-1] ^= 0x40 // in the TCP header: the checksum no longer holds
		if msg := checksumsKept(f, bad); msg == "" {
			t.Fatal("a broken TCP checksum went unnoticed")
		}
		if len(bad) > 0 && bad[12] == 0x08 {
			bad[14+8]-- // TTL: the IPv4 header checksum no longer holds
		}
		fixChecksums(bad)
		if msg := checksumsValid(bad); msg != "" {
			t.Fatalf("after fixChecksums: %s", msg)
		}
	}
}
