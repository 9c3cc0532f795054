package kmodel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/bits"
	"net/netip"
	"sync"

	"github.com/xskgate/xskgate/internal/packet"
)

// Traffic is a deterministic stream of Ethernet/IPv4/UDP frames from
// 198.18.0.1 to 198.18.0.2 (RFC 2544 benchmark range). Frame seq (0, 1, ...)
// carries seq in its payload; its length and filler bytes are functions of
// Seed and seq alone, so a receiver checks every byte without state.
type Traffic struct {
	Seed   uint64
	MinLen int // frame length bounds (no FCS); MinLen defaults to 64,
	MaxLen int // MaxLen to MinLen. Both at least MinFrameLen.
	// Partial leaves each frame's UDP checksum partial (the folded
	// pseudo-header sum), as a sender with checksum offload hands it to
	// its device; Check then wants it complete and valid.
	Partial bool
}

const (
	ethLen  = 14
	ipLen   = 20
	udpLen  = 8
	hdrLen  = ethLen + ipLen + udpLen
	plHdr   = 12         // payload magic u32 + seq u64
	plMagic = 0x4B4D5351 // "KMSQ"

	// MinFrameLen is the shortest frame a Traffic makes: headers, magic
	// and sequence number.
	MinFrameLen = hdrLen + plHdr
)

// Errors Check returns. They are static values: checking does not allocate.
var (
	ErrShort    = errors.New("kmodel: frame too short")
	ErrHeader   = errors.New("kmodel: Ethernet/IPv4/UDP header is not the pattern's")
	ErrChecksum = errors.New("kmodel: bad IPv4 header checksum")
	// ErrUDPChecksum: a Partial pattern's frame arrived with its UDP
	// checksum not completed, or wrong.
	ErrUDPChecksum = errors.New("kmodel: UDP checksum not complete and valid")
	ErrLength      = errors.New("kmodel: frame length does not match its sequence number")
	ErrPayload     = errors.New("kmodel: payload bytes differ from the pattern")
)

func (t Traffic) bounds() (lo, hi int) {
	lo, hi = t.MinLen, t.MaxLen
	if lo == 0 {
		lo = 64
	}
	lo = max(lo, MinFrameLen)
	return lo, max(hi, lo)
}

// mix is SplitMix64's finaliser: a cheap, well-spread function of its input.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// Len is the length of frame seq.
func (t Traffic) Len(seq uint64) int {
	lo, hi := t.bounds()
	if lo == hi {
		return lo
	}
	return lo + int(mix(t.Seed^bits.RotateLeft64(seq, 17))%uint64(hi-lo+1))
}

// filler returns the 8 pattern bytes at payload word w of frame seq.
func (t Traffic) filler(seq, w uint64) uint64 {
	return mix(t.Seed + seq*0x632be59bd9b4e019 + w*0x85ebca77c2b2ae63)
}

// Frame writes frame seq into buf, which must hold MaxLen bytes, and returns
// it. It does not allocate.
func (t Traffic) Frame(buf []byte, seq uint64) []byte {
	n := t.Len(seq)
	f := buf[:n]
	putHeader(f, seq, n)
	fill := f[MinFrameLen:]
	for w := 0; w < len(fill); w += 8 {
		x := t.filler(seq, uint64(w/8))
		for j := w; j < min(w+8, len(fill)); j++ {
			fill[j] = byte(x >> (8 * (j - w)))
		}
	}
	if t.Partial {
		binary.BigEndian.PutUint16(f[ethLen+ipLen+6:], ^packet.Checksum(nil, udpPseudo(f)))
	}
	return f
}

// udpPseudo is the pseudo-header sum of a pattern frame's UDP datagram.
func udpPseudo(f []byte) uint32 {
	ip := f[ethLen : ethLen+ipLen]
	return packet.PseudoHeaderSum(netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20])), packet.ProtoUDP, len(f)-ethLen-ipLen)
}

// putHeader writes the first MinFrameLen bytes of a frame of n bytes.
func putHeader(f []byte, seq uint64, n int) {
	f = f[:MinFrameLen]
	copy(f[0:6], []byte{0x02, 0, 0, 0, 0, 0x02}) // dst MAC, locally administered
	copy(f[6:12], []byte{0x02, 0, 0, 0, 0, 0x01})
	binary.BigEndian.PutUint16(f[12:], packet.EtherTypeIPv4)
	ip := f[ethLen : ethLen+ipLen]
	ip[0], ip[1] = 0x45, 0
	binary.BigEndian.PutUint16(ip[2:], uint16(n-ethLen))
	binary.BigEndian.PutUint16(ip[4:], uint16(seq))
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	ip[8], ip[9] = 64, packet.ProtoUDP
	copy(ip[12:20], []byte{198, 18, 0, 1, 198, 18, 0, 2})
	binary.BigEndian.PutUint16(ip[10:], packet.IPv4HeaderChecksum(ip))
	udp := f[ethLen+ipLen : hdrLen]
	binary.BigEndian.PutUint16(udp[0:], 50000)
	binary.BigEndian.PutUint16(udp[2:], 50001)
	binary.BigEndian.PutUint16(udp[4:], uint16(n-ethLen-ipLen))
	binary.BigEndian.PutUint16(udp[6:], 0) // no checksum: legal over IPv4
	binary.BigEndian.PutUint32(f[hdrLen:], plMagic)
	binary.BigEndian.PutUint64(f[hdrLen+4:], seq)
}

// Check verifies that frame is one of the pattern's, byte for byte, and
// returns its sequence number. It does not allocate.
func (t Traffic) Check(frame []byte) (seq uint64, err error) {
	if len(frame) < MinFrameLen {
		return 0, ErrShort
	}
	ip := frame[ethLen : ethLen+ipLen]
	if binary.BigEndian.Uint16(ip[10:]) != packet.IPv4HeaderChecksum(ip) {
		return 0, ErrChecksum
	}
	seq = binary.BigEndian.Uint64(frame[hdrLen+4:])
	if t.Len(seq) != len(frame) {
		return seq, ErrLength
	}
	var h [MinFrameLen]byte
	putHeader(h[:], seq, len(frame))
	if t.Partial {
		if packet.Checksum(frame[ethLen+ipLen:], udpPseudo(frame)) != 0 {
			return seq, ErrUDPChecksum
		}
		copy(h[ethLen+ipLen+6:ethLen+ipLen+8], frame[ethLen+ipLen+6:])
	}
	if !bytes.Equal(h[:], frame[:MinFrameLen]) {
		return seq, ErrHeader
	}
	fill := frame[MinFrameLen:]
	for w := 0; w < len(fill); w += 8 {
		x := t.filler(seq, uint64(w/8))
		for j := w; j < min(w+8, len(fill)); j++ {
			if fill[j] != byte(x>>(8*(j-w))) {
				return seq, ErrPayload
			}
		}
	}
	return seq, nil
}

// Source generates a Traffic stream in order. It is not safe for concurrent
// use.
type Source struct {
	t   Traffic
	seq uint64
	buf []byte
}

// NewSource returns a source positioned at sequence number 0.
func NewSource(t Traffic) *Source {
	_, hi := t.bounds()
	return &Source{t: t, buf: make([]byte, hi)}
}

// Next returns the next frame, valid until the following call.
func (s *Source) Next() []byte {
	f := s.t.Frame(s.buf, s.seq)
	s.seq++
	return f
}

// Sent is how many frames the source produced: the next sequence number.
func (s *Source) Sent() uint64 { return s.seq }

// Send produces n frames and delivers each to r; frames r refuses are gone,
// as on a wire. It returns how many r accepted.
func (s *Source) Send(r Receiver, n int) (accepted int) {
	for range n {
		if r.Deliver(s.Next()) {
			accepted++
		}
	}
	return accepted
}

// SinkStats summarise what a Sink received.
type SinkStats struct {
	Received   uint64 // frames delivered
	Unique     uint64 // distinct valid sequence numbers
	Duplicates uint64 // valid frames whose sequence number was seen before
	Malformed  uint64 // frames failing Traffic.Check
}

// Sink is a Receiver that checks every frame against a Traffic and records
// which sequence numbers arrived. Safe for concurrent use.
type Sink struct {
	t     Traffic
	mu    sync.Mutex
	seen  []uint64 // bitmap by sequence number
	st    SinkStats
	first error
}

// maxSinkSeq bounds the bitmap (512 MiB of bits would be absurd for a test).
const maxSinkSeq = 1 << 32

// NewSink returns a sink for t.
func NewSink(t Traffic) *Sink { return &Sink{t: t, seen: make([]uint64, 0, 1024)} }

// Deliver checks and records frame; it always accepts it.
func (s *Sink) Deliver(frame []byte) bool {
	seq, err := s.t.Check(frame)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Received++
	if err == nil && seq >= maxSinkSeq {
		err = ErrHeader
	}
	if err != nil {
		s.st.Malformed++
		if s.first == nil {
			s.first = err
		}
		return true
	}
	w := seq / 64
	for uint64(len(s.seen)) <= w {
		s.seen = append(s.seen, 0)
	}
	if s.seen[w]&(1<<(seq%64)) != 0 {
		s.st.Duplicates++
		return true
	}
	s.seen[w] |= 1 << (seq % 64)
	s.st.Unique++
	return true
}

// Stats returns the counts so far.
func (s *Sink) Stats() SinkStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// Err returns the first check failure, or nil.
func (s *Sink) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first
}

// Has reports whether sequence number seq arrived.
func (s *Sink) Has(seq uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.has(seq)
}

func (s *Sink) has(seq uint64) bool {
	w := seq / 64
	return w < uint64(len(s.seen)) && s.seen[w]&(1<<(seq%64)) != 0
}

// Missing returns up to max sequence numbers below sent that never arrived,
// and how many there are in all.
func (s *Sink) Missing(sent uint64, max int) (seqs []uint64, total uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for q := uint64(0); q < sent; q++ {
		if !s.has(q) {
			total++
			if len(seqs) < max {
				seqs = append(seqs, q)
			}
		}
	}
	return seqs, total
}
