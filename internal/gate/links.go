package gate

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/ethtool"
)

// The gate's links change under it: an operator or a driver takes one
// down, deletes it, renames it, moves it to another namespace, changes its
// MTU or queue count. Nothing in the data path notices: TX on a down or
// deleted interface fails or never completes, frames pile up on TX, the
// traffic is black-holed while the counters look healthy. So the gate
// watches both links (rtnetlink link events in the interfaces' namespace,
// and a poll every pollEvery in case events were lost) and:
//
//   - link down (IFF_UP lost, or operational state not up): logged,
//     counted, and the engine posts nothing to that side's TX while it is
//     down (frames for it are dropped and counted as link_down); up again:
//     logged, forwarding resumes;
//   - removed (deleted, or moved to another namespace), renamed, MTU or
//     queue count changed: the gate cannot follow (sockets are bound to
//     the ifindex and queues, the XDP program to the device, the UMEM
//     sized for the MTU). Logged, and Failed is closed with an error that
//     names the interface and what changed: the daemon exits non-zero, its
//     teardown intact, for the service manager to restart it.

// pollEvery is how often the watcher re-reads both links besides events:
// events can be lost (socket overrun), and a queue count change raises
// none on some drivers.
const pollEvery = time.Second

// linkState is what the watcher compares.
type linkState struct {
	Index   int
	Name    string
	MTU     int
	RX, TX  int
	Up      bool
	Oper    string
	Removed bool
}

// change says what in now the gate cannot follow ("" if nothing); up/down
// transitions are followed, not changes.
func change(was, now linkState) string {
	switch {
	case now.Removed:
		return "removed from the gate's network namespace (deleted, or moved to another namespace)"
	case now.Name != was.Name:
		return fmt.Sprintf("renamed to %q", now.Name)
	case now.MTU != was.MTU:
		return fmt.Sprintf("MTU changed from %d to %d", was.MTU, now.MTU)
	case now.RX != was.RX || now.TX != was.TX:
		return fmt.Sprintf("queue count changed from rx %d tx %d to rx %d tx %d", was.RX, was.TX, now.RX, now.TX)
	}
	return ""
}

// stateOf reads l's state. Up: administratively up (IFF_UP) and the
// operational state up, or unknown (drivers that do not report one).
func stateOf(l netlink.Link) linkState {
	a := l.Attrs()
	oper := a.OperState
	return linkState{Index: a.Index, Name: a.Name, MTU: a.MTU,
		Up:   a.Flags&net.FlagUp != 0 && (oper == netlink.OperUp || oper == netlink.OperUnknown),
		Oper: oper.String()}
}

// LinkStatus is one watched link's state, for stats and metrics.
type LinkStatus struct {
	Side      string    `json:"side"`
	Iface     string    `json:"iface"`
	Up        bool      `json:"up"`
	OperState string    `json:"oper_state"`
	Downs     uint64    `json:"downs"`          // times it went down since start
	Since     time.Time `json:"since,omitzero"` // when it last went down or up
}

// linkSide is one watched link.
type linkSide struct {
	side  engine.Side
	was   linkState // at Open: what must not change (up or down: the engine's flag, Engine.LinkDown)
	downs atomic.Uint64
	since time.Time // guarded by linkWatch.mu
	oper  string    // guarded by linkWatch.mu
}

// linkWatch watches the gate's two links. It is made in Open, on the
// thread in the interfaces' namespace, and runs from Start to Close.
type linkWatch struct {
	e     *engine.Engine
	log   *slog.Logger
	ns    netns.NsHandle
	h     *netlink.Handle // rtnetlink in ns, for polls
	chans *ethtool.Reader // the gate's, in ns, for queue counts
	sides [2]*linkSide
	ups   chan netlink.LinkUpdate
	stop  chan struct{} // closes the subscription and the loop
	wg    sync.WaitGroup

	mu     sync.Mutex
	failed chan struct{} // closed on the first change the gate cannot follow
	err    error
}

// newLinkWatch prepares the watch of outer and inner in the calling
// thread's network namespace; chans, made there too, stays the caller's.
func newLinkWatch(e *engine.Engine, log *slog.Logger, q [2]ifQueues, chans *ethtool.Reader) (w *linkWatch, err error) {
	w = &linkWatch{e: e, log: log, ns: -1, chans: chans, stop: make(chan struct{}), failed: make(chan struct{})}
	defer func() {
		if err != nil {
			w.close()
		}
	}()
	if w.ns, err = netns.Get(); err != nil {
		return nil, fmt.Errorf("watch links: this thread's network namespace: %w", err)
	}
	if w.h, err = netlink.NewHandleAt(w.ns); err != nil {
		return nil, fmt.Errorf("watch links: rtnetlink: %w", err)
	}
	for i, side := range []engine.Side{engine.Outer, engine.Inner} {
		l, err := w.h.LinkByName(q[i].Name)
		if err != nil {
			return nil, fmt.Errorf("watch links: %s: %w", q[i].Name, err)
		}
		st := stateOf(l)
		st.RX, st.TX = q[i].RX, q[i].TX
		s := &linkSide{side: side, was: st, since: time.Now(), oper: st.Oper}
		w.sides[i] = s
		e.SetLinkDown(side, !st.Up)
		if !st.Up {
			log.Warn("link down at start: frames for it are dropped (drops reason=link_down) until it is up",
				"side", side.String(), "iface", st.Name, "oper_state", st.Oper, "admin_up", l.Attrs().Flags&net.FlagUp != 0)
		}
	}
	if err := w.subscribe(); err != nil {
		return nil, err
	}
	return w, nil
}

// subscribe listens to link events in the watch's namespace; it can run on
// any thread.
func (w *linkWatch) subscribe() error {
	ups := make(chan netlink.LinkUpdate, 64)
	err := netlink.LinkSubscribeWithOptions(ups, w.stop, netlink.LinkSubscribeOptions{
		Namespace: &w.ns,
		// Errors end the subscription; the loop resubscribes and the
		// poll covers the gap.
		ErrorCallback: func(error) {},
	})
	if err != nil {
		return fmt.Errorf("watch links: subscribe to rtnetlink link events: %w", err)
	}
	w.ups = ups
	return nil
}

func (w *linkWatch) start() {
	w.wg.Add(1)
	go w.run()
}

func (w *linkWatch) run() {
	defer w.wg.Done()
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	ups := w.ups
	for {
		select {
		case <-w.stop:
			return
		case u, ok := <-ups:
			if !ok {
				// The subscription ended (socket overrun): resubscribe on
				// the next tick; polls cover the gap.
				ups = nil
				continue
			}
			for _, s := range w.sides {
				if int(u.Index) != s.was.Index {
					continue
				}
				if u.Header.Type == unix.RTM_DELLINK {
					w.apply(s, linkState{Removed: true})
				} else {
					w.observe(s, u.Link)
				}
			}
		case <-t.C:
			if ups == nil && w.subscribe() == nil {
				ups = w.ups
			}
			for _, s := range w.sides {
				l, err := w.h.LinkByIndex(s.was.Index)
				var nf netlink.LinkNotFoundError
				switch {
				case errors.As(err, &nf) || errors.Is(err, unix.ENODEV):
					w.apply(s, linkState{Removed: true})
				case err == nil:
					w.observe(s, l)
				}
			}
		}
		if w.Err() != nil {
			return // the gate is being torn down: nothing more to follow
		}
	}
}

// observe completes l's state with its queue counts and applies it.
func (w *linkWatch) observe(s *linkSide, l netlink.Link) {
	st := stateOf(l)
	st.RX, st.TX = s.was.RX, s.was.TX
	if ch, err := w.chans.Channels(st.Name); err == nil {
		st.RX, st.TX = ch.RX, ch.TX
	}
	w.apply(s, st)
}

// apply acts on a side's new state: fail on a change the gate cannot
// follow, else follow down and up.
func (w *linkWatch) apply(s *linkSide, now linkState) {
	if what := change(s.was, now); what != "" {
		// Nothing more goes to its TX; shutdown does not wait for it.
		w.e.SetLinkDown(s.side, true)
		err := fmt.Errorf("%s interface %s: %s: the gate cannot follow; exiting for the service manager to restart it", s.side, s.was.Name, what)
		w.mu.Lock()
		first := w.err == nil
		if first {
			w.err = err
			close(w.failed)
		}
		w.mu.Unlock()
		if first {
			w.log.Error(err.Error(), "side", s.side.String(), "iface", s.was.Name)
		}
		return
	}
	if now.Up == !w.e.LinkDown(s.side) {
		return
	}
	w.e.SetLinkDown(s.side, !now.Up)
	w.mu.Lock()
	s.since, s.oper = time.Now(), now.Oper
	w.mu.Unlock()
	if now.Up {
		w.log.Info("link up: forwarding to it resumes", "side", s.side.String(), "iface", now.Name, "oper_state", now.Oper)
		return
	}
	s.downs.Add(1)
	w.log.Warn("link down: frames for it are dropped and counted (drops reason=link_down) until it is up",
		"side", s.side.String(), "iface", now.Name, "oper_state", now.Oper)
}

// Err is the change the gate could not follow, nil while there is none.
func (w *linkWatch) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *linkWatch) status() []LinkStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []LinkStatus
	for _, s := range w.sides {
		if s == nil {
			continue
		}
		out = append(out, LinkStatus{Side: s.side.String(), Iface: s.was.Name, Up: !w.e.LinkDown(s.side),
			OperState: s.oper, Downs: s.downs.Load(), Since: s.since})
	}
	return out
}

// close stops the loop and releases the sockets; idempotent.
func (w *linkWatch) close() {
	select {
	case <-w.stop:
		return
	default:
	}
	close(w.stop)
	w.wg.Wait()
	// The subscription may be blocked handing over an event: let it see
	// its closed socket and end (it then closes the channel). No
	// subscription (newLinkWatch failed before it): nothing to drain.
	if w.ups != nil {
		go func(ups chan netlink.LinkUpdate) {
			for range ups {
			}
		}(w.ups)
	}
	if w.h != nil {
		w.h.Close()
	}
	if w.ns >= 0 {
		w.ns.Close()
	}
}

// Failed is closed when a link changed in a way the gate cannot follow
// (removed, moved, renamed, MTU or queue count changed); Err then says
// which and what. A gate opened without links to watch never fails.
func (g *Gate) Failed() <-chan struct{} {
	if g.links == nil {
		return nil
	}
	return g.links.failed
}

// Err returns the link change that closed Failed, or nil.
func (g *Gate) Err() error {
	if g.links == nil {
		return nil
	}
	return g.links.Err()
}

// Links returns both links' state, outer first.
func (g *Gate) Links() []LinkStatus {
	if g.links == nil {
		return nil
	}
	return g.links.status()
}
