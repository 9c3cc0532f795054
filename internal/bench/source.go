package bench

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/lab"
)

// GenKind names a traffic generator.
type GenKind string

const (
	// GenAuto takes the live-frame generator if the kernel lets it run,
	// else the TX ring.
	GenAuto GenKind = "auto"
	// GenLive is BPF_PROG_RUN with live frames (Generator).
	GenLive GenKind = "live"
	// GenRing is an AF_PACKET TX ring (RingGenerator).
	GenRing GenKind = "ring"
)

// source is a generator as the bench drives it.
type source interface {
	Run(cpu int, rate float64, stop <-chan struct{}) error
	Sent() uint64
	Close() error
}

var (
	_ source = (*Generator)(nil)
	_ source = (*RingGenerator)(nil)
)

// chooseGen picks the generator for kind and says why: the live-frame
// generator is the first choice (it transmits from XDP, without an skb per
// frame), probed in the client's namespace; the TX ring otherwise.
func chooseGen(l *lab.Lab, kind GenKind) (GenKind, string, error) {
	switch kind {
	case GenRing:
		return GenRing, "chosen with --gen ring", nil
	case GenLive, GenAuto, "":
	default:
		return "", "", fmt.Errorf("unknown generator %q (want auto, live or ring)", kind)
	}
	err := l.Do(l.ClientNS, func() error {
		g, err := NewGenerator(l.ClientIndex, UDPFrame(l.ServerMAC, l.ClientMAC, l.ClientIP4, l.ServerIP4))
		if err != nil {
			return err
		}
		defer g.Close()
		return g.Probe()
	})
	switch {
	case err == nil:
		return GenLive, "live-frame BPF_PROG_RUN probed fine", nil
	case kind == GenLive:
		return "", "", fmt.Errorf("generator: %w", err)
	}
	return GenRing, fmt.Sprintf("live frames refused by this kernel: %v", err), nil
}

// describe is one line about a generator for the bench's output.
func (k GenKind) describe() string {
	if k == GenLive {
		return "BPF_PROG_RUN live frames (XDP_TX out of the client's eth0)"
	}
	return fmt.Sprintf("AF_PACKET TX ring (TPACKET_V2, PACKET_QDISC_BYPASS, %d slots, %d-frame sends) on the client's eth0", ringSlots, ringBatch)
}

// pinThread pins the calling (locked) thread to cpu (-1: not pinned) and,
// if nice is not 0, sets its nice value: other work on the generator's
// core would otherwise set the offered rate. It returns the undo, for the
// thread goes back to the runtime's pool afterwards.
func pinThread(cpu, nice int) (func(), error) {
	var undo []func()
	all := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	if cpu >= 0 {
		var old, set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &old); err == nil {
			undo = append(undo, func() { unix.SchedSetaffinity(0, &old) })
		}
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			all()
			return nil, fmt.Errorf("pin generator to cpu %d: %w", cpu, err)
		}
	}
	if nice != 0 {
		// On Linux the nice value is a thread's; the raw getpriority(2)
		// returns 20 - nice.
		tid := unix.Gettid()
		raw, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
		if err == nil {
			err = unix.Setpriority(unix.PRIO_PROCESS, tid, nice)
		}
		if err != nil {
			all()
			return nil, fmt.Errorf("set the generator's nice value to %d: %w", nice, err)
		}
		undo = append(undo, func() { unix.Setpriority(unix.PRIO_PROCESS, tid, 20-raw) })
	}
	return all, nil
}

// newSource makes a generator of kind for frame, in the client's
// namespace. vary (the floods' Spoofer) needs the ring: the live-frame
// program sends one fixed frame.
func newSource(l *lab.Lab, kind GenKind, frames [][]byte, vary Varier, limit time.Duration, nice int) (source, error) {
	if kind == GenLive && vary == nil && len(frames) == 1 {
		g, err := NewGenerator(l.ClientIndex, frames[0])
		if err != nil {
			return nil, err
		}
		g.Limit, g.Nice = limit, nice
		return g, nil
	}
	var g *RingGenerator
	err := l.Do(l.ClientNS, func() error {
		var err error
		g, err = NewRingGeneratorMix(l.ClientIndex, frames, vary, limit)
		return err
	})
	if err != nil {
		return nil, err
	}
	g.Nice = nice
	return g, nil
}
