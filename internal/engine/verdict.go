package engine

import (
	"github.com/xskgate/xskgate/internal/packet"
	"github.com/xskgate/xskgate/internal/xsk"
)

// Verdict is what happens to a received frame.
type Verdict uint8

const (
	Forward Verdict = iota // TX on the other interface, same UMEM frame
	Bounce                 // TX back out of the interface it came in on
	Drop                   // back to the free list
	numVerdicts
)

func (v Verdict) String() string {
	switch v {
	case Forward:
		return "forward"
	case Bounce:
		return "bounce"
	case Drop:
		return "drop"
	}
	return "unknown"
}

// Packet is one received frame handed to the Inspector. Data aliases the
// UMEM: the Inspector may rewrite it in place (a bounce reply), and then
// sets Len to the new length (at most cap(Data)). Before it writes to a
// frame (any byte: the addresses and lengths of the pseudo-header too) it
// calls CompleteChecksum.
type Packet struct {
	Desc    xsk.Desc
	Data    []byte // Data[:Desc.Len]; cap reaches the end of the chunk
	Verdict Verdict
	Len     uint32 // length to transmit; starts as Desc.Len

	// A partial checksum left for the kernel to complete at TX
	// (checksum.go): the segment starts at csumStart and the field is at
	// csumField, which held csumWant. csumField 0: none.
	csumStart, csumField, csumWant uint16
}

// CompleteChecksum completes in software a checksum the worker left
// partial for the kernel to complete at TX (checksum.go). An Inspector
// calls it before it writes to Data: a rewritten field would no longer be
// the pseudo-header sum the kernel's completion needs, and a partial field
// in a frame rewritten around it would go out unfinished.
func (pk *Packet) CompleteChecksum() {
	if pk.csumField == 0 {
		return
	}
	if f := pk.Data[:cap(pk.Data)]; int(pk.Desc.Len) <= len(f) {
		udp := pk.csumField-pk.csumStart == 6
		packet.CompleteAt(f[pk.csumStart:pk.Desc.Len], int(pk.csumField-pk.csumStart), udp)
	}
	pk.csumField = 0
}

// Inspector decides per frame. It is called by every worker concurrently,
// each with its own batch; worker is the worker's index, for per-worker
// state. The default verdict on entry is Forward.
type Inspector interface {
	Inspect(worker int, from Side, pkts []Packet)
}

// ForwardAll is the Inspector that forwards everything.
type ForwardAll struct{}

func (ForwardAll) Inspect(int, Side, []Packet) {}
