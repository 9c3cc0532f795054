package gate

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/ethtool"
)

// Why the gate serves every queue, or refuses to start.
//
// The XDP program redirects a frame to the XSKMAP slot of its RX queue; a
// slot without a socket makes bpf_redirect_map return XDP_PASS, so a frame
// arriving on a queue the gate does not serve goes to the host stack: never
// forwarded, never inspected, and nothing counts it. Worker q owns queue q
// of both interfaces: it receives on queue q of either and transmits on
// queue q of the other. Hence, with N queue pairs served:
//
//   - every RX queue of both interfaces has a socket: N >= RX of each;
//   - every socket's TX queue exists: N <= TX of each.
//
// N is the larger RX count, and a queue count asked for (--queues,
// queues:) that differs from it is refused with the fix, never silently
// served in part.

// ifQueues is one interface's queue counts.
type ifQueues struct {
	Name string
	ethtool.Channels
}

// readQueues reads ifname's real RX and TX queue counts: the ethtool
// channels ioctl, or for drivers without it the counts netlink reports
// (such drivers cannot change them).
func readQueues(r *ethtool.Reader, ifname string, log *slog.Logger) (ifQueues, error) {
	ch, err := r.Channels(ifname)
	if errors.Is(err, unix.EOPNOTSUPP) {
		l, lerr := netlink.LinkByName(ifname)
		if lerr != nil {
			return ifQueues{}, fmt.Errorf("read queue counts of %s: %w", ifname, lerr)
		}
		a := l.Attrs()
		ch = ethtool.Channels{RX: a.NumRxQueues, TX: a.NumTxQueues, MaxRX: a.NumRxQueues, MaxTX: a.NumTxQueues}
		log.Info("driver has no ethtool channels: queue counts from netlink", "iface", ifname, "rx", ch.RX, "tx", ch.TX)
		err = nil
	}
	if err != nil {
		return ifQueues{}, fmt.Errorf("read queue counts of %s (ethtool -l %s): %w", ifname, ifname, err)
	}
	if ch.RX < 1 || ch.TX < 1 {
		return ifQueues{}, fmt.Errorf("%s reports %d RX and %d TX queues: the gate needs at least one of each", ifname, ch.RX, ch.TX)
	}
	return ifQueues{Name: ifname, Channels: ch}, nil
}

// planQueues returns how many queue pairs the gate serves: every RX queue
// of both interfaces, or an error naming the interface, the counts and the
// fix. requested is the configured count; 0 means all.
func planQueues(requested int, outer, inner ifQueues) (int, error) {
	more := outer // the most RX queues
	if inner.RX > outer.RX {
		more = inner
	}
	need := more.RX
	// The interface with fewer TX queues than need: a worker would have
	// no queue to transmit on there.
	short := outer
	if inner.TX < outer.TX {
		short = inner
	}
	if short.TX < need {
		n := short.TX
		fix := "`" + setQueues(more, n) + "`"
		if short.MaxTX >= need && (!short.Combined || short.MaxRX >= need) {
			fix += " (or `" + setQueues(short, need) + "`)"
		}
		return 0, fmt.Errorf("%s has %d RX queues and %s %d TX queues: the gate pairs queue q of both interfaces, so it could serve only %d and the XDP program would pass the frames of %s's queues %s to the host stack, never inspected; make the counts equal: %s",
			more.Name, more.RX, short.Name, short.TX, n, more.Name, queueRange(n, need), fix)
	}
	switch {
	case requested == 0 || requested == need:
		return need, nil
	case requested < need:
		var unserved, fixes []string
		for _, q := range []ifQueues{outer, inner} {
			if q.RX > requested {
				unserved = append(unserved, fmt.Sprintf("%s's RX queues %s (of %d)", q.Name, queueRange(requested, q.RX), q.RX))
				fixes = append(fixes, "`"+setQueues(q, requested)+"`")
			}
		}
		return 0, fmt.Errorf("queues %d leaves %s unserved: the XDP program would pass their frames to the host stack, never inspected; use --queues 0 (queues: 0 in the config) to serve all %d, or reduce the queues with %s",
			requested, strings.Join(unserved, " and "), need, strings.Join(fixes, " and "))
	default:
		return 0, fmt.Errorf("queues %d: %s has %d RX queues and %s %d, so there is no queue %s to serve; use --queues 0 (queues: 0 in the config) to serve all %d",
			requested, outer.Name, outer.RX, inner.Name, inner.RX, queueRange(need, requested), need)
	}
}

// setQueues is the ethtool command that gives q n queues.
func setQueues(q ifQueues, n int) string {
	if q.Combined {
		return fmt.Sprintf("ethtool -L %s combined %d", q.Name, n)
	}
	return fmt.Sprintf("ethtool -L %s rx %d tx %d", q.Name, n, n)
}

// queueRange writes queues [lo, hi) as "2" or "2-3".
func queueRange(lo, hi int) string {
	if hi-lo == 1 {
		return fmt.Sprint(lo)
	}
	return fmt.Sprintf("%d-%d", lo, hi-1)
}
