package engine

import (
	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/xsk"
)

// Port is one (interface, queue) socket as the engine sees it: a real
// *xsk.Socket or a kernel model's port.
type Port interface {
	Rings() (fill *xsk.FillRing, comp *xsk.CompRing, rx *xsk.RxRing, tx *xsk.TxRing)
	Kick() unix.Errno
	Stats() (xsk.Statistics, error)
	Ifname() string
	Queue() int
	TxBatch() uint32
}

// pollable ports can be waited on with poll(2) when idle.
type pollable interface{ FD() int }

// txChecksummer ports can ask the kernel to complete a partial checksum
// at TX (checksum.go).
type txChecksummer interface{ TxChecksum() bool }

var (
	_ Port          = (*xsk.Socket)(nil)
	_ rxWaker       = (*xsk.Socket)(nil)
	_ txChecksummer = (*xsk.Socket)(nil)
)

// Side says which interface a port belongs to.
type Side uint8

const (
	Outer Side = iota // Internet side
	Inner             // protected side
)

func (s Side) String() string {
	if s == Outer {
		return "outer"
	}
	return "inner"
}

// Other is the opposite side.
func (s Side) Other() Side { return 1 - s }
