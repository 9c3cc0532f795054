package protect

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/packet"
	"github.com/xskgate/xskgate/internal/traffic"
)

// infoConn keeps the socket's TCP_INFO as it was when the connection was
// closed (traffic.Exchange closes it).
type infoConn struct {
	net.Conn
	info *unix.TCPInfo
	err  error
}

func (c *infoConn) Close() error {
	rc, err := c.Conn.(*net.TCPConn).SyscallConn()
	if err == nil {
		err = rc.Control(func(fd uintptr) { c.info, c.err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	}
	if c.err == nil {
		c.err = err
	}
	return c.Conn.Close()
}

// dialInfo connects from the client's namespace to dst.
func (r *rig) dialInfo(ctx context.Context, dst netip.AddrPort) (*infoConn, error) {
	var c net.Conn
	err := r.l.Do(r.l.ClientNS, func() error {
		var err error
		c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", dst.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", dst, err)
	}
	return &infoConn{Conn: c}, nil
}

// TestLabClientSpeaksFirst: through the SYN proxy, a client that sends
// its data right after the handshake (traffic's protocol: the client's
// header comes first) loses none of it. The server's first SYN-ACK of
// each connection is dropped before the gate sees it, so that the client's
// data certainly comes while the server has not answered (in the lab the
// server is otherwise usually faster than the client's first write). The
// cookie SYN-ACK advertises window 0, so the client holds its data until
// the proxy's window update, sent when the server completed its handshake:
// the gate drops no data segment of the client and the client needs no
// retransmission timeout. (With the window the SYN-ACK used to advertise,
// its data was dropped as proxy_pending and resent after RTOs.) Spurious
// fast retransmissions are possible on a loaded machine (seen: one tail
// loss probe, answered by a D-SACK), so retransmissions are logged, not
// counted against the gate.
func TestLabClientSpeaksFirst(t *testing.T) {
	drop := &dropOnce{what: serverSynAck}
	r := newRigWrapped(t, labConfig(ModeMitigate), false, drop.wrap) // SYN rate 0: every SYN is challenged
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 8
	var wg sync.WaitGroup
	conns := make([]*infoConn, n)
	errs := make([]error, n)
	for k := range n {
		dst := netip.AddrPortFrom(r.l.ServerIP4, port)
		if k%2 == 1 {
			dst = netip.AddrPortFrom(r.l.ServerIP6, port)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := r.dialInfo(ctx, dst)
			if err != nil {
				errs[k] = err
				return
			}
			conns[k] = c
			if res := traffic.Exchange(ctx, c, uint64(k+1), 64<<10, 64<<10); res.Err != nil {
				errs[k] = fmt.Errorf("%s: %w", dst, res.Err)
			}
		}()
	}
	wg.Wait()
	for k, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
		c := conns[k]
		if c.err != nil {
			t.Fatalf("TCP_INFO: %v", c.err)
		}
		t.Logf("connection %d: %d retransmissions, %d after a timeout, %d D-SACKs", k, c.info.Total_retrans, c.info.Total_rto, c.info.Dsack_dups)
		if c.info.Total_rto != 0 {
			t.Errorf("connection %d: the client's retransmission timer fired %d times", k, c.info.Total_rto)
		}
	}
	st := r.i.Stats()
	t.Logf("cookies %+v, proxy %+v", st.Cookies, st.Proxy)
	if st.Cookies["valid"] < n || st.Proxy["window_update"] < n {
		t.Fatalf("connections not proxied: %+v %+v", st.Cookies, st.Proxy)
	}
	if drop.n.Load() != n {
		t.Fatalf("%d server SYN-ACKs dropped, want one per connection", drop.n.Load())
	}
	if d := drop.dataDropped.Load(); d != 0 {
		t.Fatalf("the gate dropped %d data segments of the clients", d)
	}
}

// dropOnce wraps the Inspector and drops, once per client port, the first
// frame what selects: a fault in the data path that needs neither tc nor
// nftables. what sees the frame before the Inspector (before) or the
// Inspector's output (after, frames still forwarded).
type dropOnce struct {
	what   func(from engine.Side, p *packet.Packet, after bool) bool
	mu     sync.Mutex
	done   map[uint16]bool
	n      atomic.Int64
	parsed [2]packet.Packet // per worker
	// dataDropped counts client segments with data the Inspector dropped
	dataDropped atomic.Int64
}

type dropWrapper struct {
	*Inspector // UseExtra is promoted: the wrapper is an engine.ExtraUser
	d          *dropOnce
}

func (d *dropOnce) wrap(i *Inspector) engine.Inspector {
	d.done = map[uint16]bool{}
	return dropWrapper{i, d}
}

// take reports whether this frame is the first selected one of its client.
func (d *dropOnce) take(worker int, from engine.Side, pk *engine.Packet, after bool) bool {
	p := &d.parsed[worker]
	if p.Parse(pk.Data[:pk.Len]) != nil || p.Proto != packet.ProtoTCP || p.L4Off < 0 || !d.what(from, p, after) {
		return false
	}
	cport := p.SrcPort
	if from == engine.Inner {
		cport = p.DstPort
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done[cport] {
		return false
	}
	d.done[cport] = true
	d.n.Add(1)
	return true
}

func (w dropWrapper) Inspect(worker int, from engine.Side, pkts []engine.Packet) {
	for k := range pkts {
		pk := pkts[k : k+1]
		if w.d.take(worker, from, &pk[0], false) {
			pk[0].Verdict = engine.Drop
			continue
		}
		p := &w.d.parsed[worker]
		data := from == engine.Outer && p.Parse(pk[0].Data) == nil && p.PayloadLen > 0
		w.Inspector.Inspect(worker, from, pk)
		if data && pk[0].Verdict == engine.Drop {
			w.d.dataDropped.Add(1)
		}
		if pk[0].Verdict == engine.Forward && w.d.take(worker, from, &pk[0], true) {
			pk[0].Verdict = engine.Drop
		}
	}
}

// serverSynAck selects the server's SYN-ACKs before the Inspector.
func serverSynAck(from engine.Side, p *packet.Packet, after bool) bool {
	return !after && from == engine.Inner && p.SrcPort == port && p.TCP.Flags&(packet.SYN|packet.ACK) == packet.SYN|packet.ACK
}

// proxySyn selects the proxy's SYN to the server (the client's cookie ACK
// rewritten by the Inspector).
func proxySyn(from engine.Side, p *packet.Packet, after bool) bool {
	return after && from == engine.Outer && p.DstPort == port && p.TCP.Flags&(packet.SYN|packet.ACK) == packet.SYN
}

// TestLabLostSYN: the proxy's first SYN toward the server of every
// connection is lost (dropped in the data path by a wrapper of the
// Inspector, no tc or nftables needed). The proxy keeps no timer: the
// client, holding data behind the window-0 SYN-ACK, sends a zero-window
// probe when its persist timer fires (one RTO, at least 200 ms), and the
// proxy turns it into the SYN again. Every connection then completes with
// its data verified. Before, the probes were dropped as proxy_pending
// until the flow's SYN_SENT timeout (120 s) and the connection hung.
func TestLabLostSYN(t *testing.T) {
	drop := &dropOnce{what: proxySyn}
	r := newRigWrapped(t, labConfig(ModeMitigate), false, drop.wrap)
	// The client's persist timer doubles from one RTO (≥ 200 ms): probes
	// at about 0.2, 0.6, 1.4, 3 s after the SYN was lost. The first one is
	// enough; a 15 s deadline leaves room for a loaded machine (seen:
	// about 0.25 s per connection here) and fails long before the old 120 s.
	const n = 4
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, n)
	took := make([]time.Duration, n)
	for k := range n {
		dst := netip.AddrPortFrom(r.l.ServerIP4, port)
		if k%2 == 1 {
			dst = netip.AddrPortFrom(r.l.ServerIP6, port)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			c, err := r.dialInfo(ctx, dst)
			if err != nil {
				errs[k] = err
				return
			}
			if res := traffic.Exchange(ctx, c, uint64(k+1), 16<<10, 16<<10); res.Err != nil {
				errs[k] = fmt.Errorf("%s: %w", dst, res.Err)
			}
			took[k] = time.Since(start)
		}()
	}
	wg.Wait()
	st := r.i.Stats()
	t.Logf("connections took %v; SYNs dropped %d; proxy %+v", took, drop.n.Load(), st.Proxy)
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if drop.n.Load() != n || st.Proxy["syn_resent"] < n {
		t.Fatalf("%d SYNs to the server lost, %d resent; want %d lost and as many resent", drop.n.Load(), st.Proxy["syn_resent"], n)
	}
}
