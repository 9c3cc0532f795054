package flow

import (
	"net/netip"
	"testing"
)

// peer is one endpoint as seen by the gate.
type peer struct {
	addr netip.Addr
	port uint16
	dir  Dir // the direction its segments travel
}

var (
	client = peer{netip.MustParseAddr("198.19.113.7"), 40000, Inbound}
	server = peer{netip.MustParseAddr("198.18.0.10"), 443, Outbound}
)

// conn drives one connection through a table, tracking each side's next
// sequence number so that segments are in window unless a test says not.
type conn struct {
	tb         testing.TB
	t          *Table
	c, s       peer
	cISN, sISN uint32
	cNxt, sNxt uint32
	win        uint16
	wscale     int8
	now        uint32
}

func newConn(tb testing.TB, t *Table) *conn {
	return &conn{tb: tb, t: t, c: client, s: server, cISN: 1000, sISN: 5000000,
		cNxt: 1000, sNxt: 5000000, win: 65535, wscale: -1, now: 1000}
}

// seg builds a segment from the client (fromClient) or the server with the
// current next sequence numbers.
func (x *conn) seg(fromClient bool, flags uint8, n uint32) *Segment {
	from, to := x.s, x.c
	seq, ack := x.sNxt, x.cNxt
	if fromClient {
		from, to = x.c, x.s
		seq, ack = x.cNxt, x.sNxt
	}
	if flags&FlagSYN != 0 {
		seq = x.sISN
		if fromClient {
			seq = x.cISN
		}
	}
	if flags&FlagACK == 0 {
		ack = 0
	}
	return &Segment{Src: from.addr, Dst: to.addr, SrcPort: from.port, DstPort: to.port,
		Flags: flags, Seq: seq, Ack: ack, Window: x.win, WScale: x.wscale,
		SACKPerm: true, PayloadLen: n, Dir: from.dir}
}

// send tracks a segment and, if it was accepted (not merely passed as
// ignored), advances the sender's next seq.
func (x *conn) send(fromClient bool, flags uint8, n uint32) Verdict {
	s := x.seg(fromClient, flags, n)
	v := x.t.Track(s, x.now)
	if v.Action == Pass && v.Reason == ReasonOk {
		end := segEnd(s)
		if fromClient {
			if after(end, x.cNxt) {
				x.cNxt = end
			}
		} else if after(end, x.sNxt) {
			x.sNxt = end
		}
	}
	return v
}

// must sends and fails the test unless the verdict matches.
func (x *conn) must(fromClient bool, flags uint8, n uint32, want State, reason Reason) Verdict {
	x.tb.Helper()
	v := x.send(fromClient, flags, n)
	if v.State != want || v.Reason != reason {
		x.tb.Fatalf("send(client=%v flags=%#x len=%d) = %+v (state %v reason %v), want state %v reason %v",
			fromClient, flags, n, v, v.State, v.Reason, want, reason)
	}
	return v
}

const (
	fromC = true
	fromS = false
)

// handshake brings the connection to ESTABLISHED.
func (x *conn) handshake() {
	x.tb.Helper()
	x.must(fromC, FlagSYN, 0, StateSynSent, ReasonOk)
	x.must(fromS, FlagSYN|FlagACK, 0, StateSynRecv, ReasonOk)
	x.must(fromC, FlagACK, 0, StateEstablished, ReasonOk)
}

func (x *conn) state() (State, bool) {
	return x.t.Lookup(x.seg(true, FlagACK, 0), x.now)
}

func newTable(tb testing.TB, cfg Config) *Table {
	tb.Helper()
	if cfg.Capacity == 0 {
		cfg.Capacity = 1024
	}
	t, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return t
}
