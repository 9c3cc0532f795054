package kmodel

import (
	"encoding/binary"
	"fmt"

	"github.com/xskgate/xskgate/internal/xsk"
)

// This file is a small stand-in for xskgate's integrity checks (afxdp-kernel-
// notes §13): chunk ownership and the copy-mode RX descriptor rules. The
// model's tests use it to show each fault is caught at its first wrong
// descriptor.

type owner uint8

const (
	ownUser owner = iota
	ownFill
	ownTx
)

type umemState struct {
	fs  uint64
	own []owner
}

func newUmemState(umemLen, fs uint64) *umemState {
	return &umemState{fs: fs, own: make([]owner, umemLen/fs)}
}

type violation struct {
	ring xsk.Kind
	idx  uint32 // free-running ring index of the entry
	what string
	got  xsk.Desc
	want uint64 // next FILL chunk, when the check knew one
}

func (v *violation) String() string {
	return fmt.Sprintf("%s[%d] %s: desc %+v (next FILL chunk %#x)", v.ring, v.idx, v.what, v.got, v.want)
}

// checker follows one port's FILL, RX, TX and COMPLETION.
type checker struct {
	u       *umemState
	umem    []byte
	rxOff   uint64
	maxRx   uint32
	queue   uint32
	fifo    []uint64 // chunks on FILL, in order
	fhead   int
	rxIdx   uint32
	compIdx uint32
	lastSeq uint32
}

func newChecker(u *umemState, umem []byte, p *Port) *checker {
	return &checker{u: u, umem: umem, rxOff: p.RxOffset(), maxRx: uint32(p.maxRx), queue: uint32(p.Queue())}
}

func (c *checker) chunk(addr uint64) uint64 { return addr &^ (c.u.fs - 1) }

func (c *checker) onFill(addr uint64) error {
	ch := c.chunk(addr)
	if c.u.own[ch/c.u.fs] != ownUser {
		return fmt.Errorf("FILL of chunk %#x not owned by the user", ch)
	}
	c.u.own[ch/c.u.fs] = ownFill
	if c.fhead > 1024 && c.fhead*2 > len(c.fifo) {
		c.fifo = append(c.fifo[:0], c.fifo[c.fhead:]...)
		c.fhead = 0
	}
	c.fifo = append(c.fifo, ch)
	return nil
}

func (c *checker) onTx(d xsk.Desc) error {
	ch := c.chunk(d.Addr)
	if c.u.own[ch/c.u.fs] != ownUser {
		return fmt.Errorf("TX of chunk %#x not owned by the user", ch)
	}
	c.u.own[ch/c.u.fs] = ownTx
	return nil
}

// onRx checks the next RX descriptor; the chunk becomes the user's when it
// passes.
func (c *checker) onRx(d xsk.Desc) *violation {
	idx := c.rxIdx
	c.rxIdx++
	var want uint64 = ^uint64(0)
	if c.fhead < len(c.fifo) {
		want = c.fifo[c.fhead]
	}
	bad := func(what string) *violation { return &violation{xsk.KindRx, idx, what, d, want} }
	switch {
	case d == xsk.Desc{}:
		return bad("uninitialized descriptor")
	case d.Addr == xsk.Poison:
		return bad("poisoned descriptor")
	case d.Addr >= uint64(len(c.umem)):
		return bad("address beyond the UMEM")
	case d.Addr&(c.u.fs-1) != c.rxOff:
		return bad("address not at chunk+headroom+256")
	case d.Len == 0 || d.Len > c.maxRx || d.Options != 0:
		return bad("length or options out of range")
	}
	ch := c.chunk(d.Addr)
	if c.u.own[ch/c.u.fs] != ownFill {
		return bad("chunk not in FILL")
	}
	if ch != want {
		return bad("not the next FILL entry")
	}
	m := c.umem[d.Addr-MetaSize : d.Addr]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != MetaMagic || le.Uint32(m[12:]) != c.queue {
		return bad("metadata magic or queue")
	}
	if le.Uint32(m[4:]) != d.Len {
		return bad("metadata length differs")
	}
	if seq := le.Uint32(m[8:]); int32(seq-c.lastSeq) <= 0 {
		return bad("sequence not increasing")
	} else {
		c.lastSeq = seq
	}
	c.fhead++
	c.u.own[ch/c.u.fs] = ownUser
	return nil
}

func (c *checker) onComp(addr uint64) *violation {
	idx := c.compIdx
	c.compIdx++
	ch := c.chunk(addr)
	if addr >= uint64(len(c.umem)) || c.u.own[ch/c.u.fs] != ownTx {
		return &violation{ring: xsk.KindComp, idx: idx, what: "completion of a chunk not on TX", got: xsk.Desc{Addr: addr}}
	}
	c.u.own[ch/c.u.fs] = ownUser
	return nil
}
