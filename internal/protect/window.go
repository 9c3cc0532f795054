package protect

import (
	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/packet"
)

// UseExtra implements engine.ExtraUser: the SYN proxy sends its window
// updates in the worker's spare frames. The engine calls it for each
// worker before they start; the Extras are kept apart from the per-worker
// state, which SetWorkers may size afresh after the engine is built.
func (i *Inspector) UseExtra(worker int, x engine.Extra) {
	if worker < 0 || worker >= maxWorkers {
		return
	}
	for len(i.extras) <= worker {
		i.extras = append(i.extras, nil)
	}
	i.extras[worker] = x
}

// extraOf is worker's Extra, nil if it has none.
func (i *Inspector) extraOf(worker int) engine.Extra {
	if worker < len(i.extras) {
		return i.extras[worker]
	}
	return nil
}

// windowUpdate sends the client the ACK that opens its send window, once
// the server's SYN-ACK (parsed in w.pkt, in frame) completed the proxied
// handshake: the cookie SYN-ACK advertised window 0 so that a client that
// speaks first sends nothing the server cannot take yet (Linux SYNPROXY's
// synproxy_send_client_ack). The update travels as the server's SYN-ACK
// would have: same L2 header (MACs, VLAN tags), out of outer, from the
// server in the client's sequence space (seq = cookie+1, ack = the
// client's ISN+1) with the server's window. The received frame becomes the
// ACK to the server, so the update needs a second frame: the worker's
// spare (engine.Extra). Without one the client's zero-window probe, a
// persist timer later, gets the server's window in the server's answer.
func (i *Inspector) windowUpdate(w *workerState, rs *ruleset, frame []byte, o cookieOpts, cookie uint32) {
	p := w.pkt
	var buf []byte
	if w.extra != nil {
		buf = w.extra.Frame(engine.Outer)
	}
	if buf == nil || len(frame) < p.L3Off {
		w.c.proxy[pWindowUpdateNoFrame].inc()
		return
	}
	// A SYN-ACK's window is never scaled; the client scales ours by the
	// shift the cookie SYN-ACK announced, if both SYNs carried one.
	win := uint32(p.TCP.Window)
	if o.wscale != wscaleNone {
		win = max(win>>rs.proxy.wscale, min(win, 1))
	}
	buf = buf[:copy(buf[:cap(buf)], frame[:p.L3Off])]
	n := putSegment(buf, p.L3Off, p.IPVersion, p.Src, p.Dst, tcpFields{srcPort: p.SrcPort, dstPort: p.DstPort,
		seq: cookie + 1, ack: p.TCP.Ack, flags: packet.ACK, window: uint16(win)}, nil)
	if len(buf) != p.L3Off || n == 0 || !w.extra.Send(n) {
		w.c.proxy[pWindowUpdateNoFrame].inc()
		return
	}
	w.c.proxy[pWindowUpdate].inc()
}
