package bench

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/lab"
)

// Outer's NAPI as a kernel thread, for the floods' cost per frame
// (Options.NAPIThread).
//
// veth runs a queue's NAPI in softirq on whatever CPU sent to it: the cost
// of receiving a flood lands on the generator's core, where no counter
// tells it apart from the generator's own work, or on the core of another
// sender that happened to schedule it. With NAPIThread the flood variants
// (and the generator's ceiling into XDP_DROP, the floor) make outer's NAPI
// a thread (/sys/class/net/outer/threaded) pinned to the device-under-test
// CPU at SCHED_FIFO 1, as a NIC queue's interrupt and softirq would run
// there on a real host, ahead of every task on that core. Its run time
// (schedstat, ns) over the frames outer's XDP program saw is the receive
// path's cost per frame, the program's included, on live frames; with the
// worker's CPU time it gives the cost of disposing of a frame, and so the
// Mpps one core could dispose of.

// NAPICost is one run's cost per frame on the device-under-test CPU with
// outer's NAPI threaded there.
type NAPICost struct {
	Frames   float64 // frames/s outer's XDP program saw
	NAPINs   float64 // NAPI thread's ns per such frame
	WorkerNs float64 // the gate's worker's ns per such frame (0: no gate)
	NAPICPU  float64 // share of the window the NAPI thread ran
}

// Ns is the CPU time a frame cost, receive path and worker.
func (c NAPICost) Ns() float64 { return c.NAPINs + c.WorkerNs }

// MppsPerCore is how many Mpps one core could dispose of at that cost.
func (c NAPICost) MppsPerCore() float64 {
	if c.Ns() <= 0 {
		return 0
	}
	return 1e3 / c.Ns()
}

func (c NAPICost) String() string {
	return fmt.Sprintf("threaded NAPI on the device-under-test CPU: %.3f Mpps through outer's XDP, NAPI %.0f ns/frame (%.0f%% of the CPU), worker %.0f ns/frame: %.0f ns/frame in all, %.2f Mpps per core",
		c.Frames/1e6, c.NAPINs, 100*c.NAPICPU, c.WorkerNs, c.Ns(), c.MppsPerCore())
}

// napiSnap is what a NAPICost is made of, at one instant.
type napiSnap struct {
	at                  time.Time
	runtime, xdp, ticks uint64
}

func (b *bencher) napiSnap(n *napiThreads) (napiSnap, error) {
	outer, err := ethtoolStats(b.l, b.l.GateNS, lab.OuterName)
	if err != nil {
		return napiSnap{}, err
	}
	return napiSnap{at: time.Now(), runtime: n.runtime(), xdp: sumKeys(outer, "xdp_packets"), ticks: pinnedTicks(b.o.GateCPU)}, nil
}

// napiCost is the cost per frame between two snapshots; gate: whether the
// gate's worker ran (its CPU time counts).
func napiCost(a, c napiSnap, gate bool) NAPICost {
	dt := c.at.Sub(a.at).Seconds()
	if c.xdp <= a.xdp || c.runtime < a.runtime || dt <= 0 {
		return NAPICost{} // no frames, or a thread went away: no figure
	}
	frames := float64(c.xdp - a.xdp)
	nc := NAPICost{Frames: frames / dt, NAPINs: float64(c.runtime-a.runtime) / frames, NAPICPU: float64(c.runtime-a.runtime) / 1e9 / dt}
	if gate {
		nc.WorkerNs = float64(c.ticks-a.ticks) / clkTck * 1e9 / frames
	}
	return nc
}

// reportNAPI prints the cost per frame of the variants measured with
// threaded NAPI (medians).
func reportNAPI(w io.Writer, o Options, res []*Result) {
	header := false
	for _, r := range res {
		if len(r.NAPI) == 0 {
			continue
		}
		if !header {
			header = true
			fmt.Fprintf(w, "\ncost per frame on CPU %d, live frames (outer's NAPI threaded there at SCHED_FIFO 1, --napi-thread; medians of %d runs)\n", o.GateCPU, len(r.NAPI))
			fmt.Fprintf(w, "%-34s %12s %10s %12s %10s %12s\n", "path", "XDP Mpps", "NAPI ns", "worker ns", "all ns", "Mpps/core")
		}
		m := func(f func(NAPICost) float64) float64 {
			v := make([]float64, len(r.NAPI))
			for k, c := range r.NAPI {
				v[k] = f(c)
			}
			return median(v)
		}
		fmt.Fprintf(w, "%-34s %12.3f %10.0f %12.0f %10.0f %12.2f\n", r.Name, m(func(c NAPICost) float64 { return c.Frames / 1e6 }),
			m(func(c NAPICost) float64 { return c.NAPINs }), m(func(c NAPICost) float64 { return c.WorkerNs }),
			m(NAPICost.Ns), m(NAPICost.MppsPerCore))
	}
	if header {
		fmt.Fprintln(w, "(XDP Mpps: frames outer's program saw; NAPI ns: the NAPI thread's run time per frame (the veth receive path and the program); worker ns: the gate's worker's CPU time per frame; Mpps/core: 1000 / all ns, what one core could dispose of at that cost, an extrapolation from the offered rate)")
	}
}

// napiComm is the name prefix of outer's NAPI threads (napi/<dev>-<id>).
var napiComm = "napi/" + lab.OuterName + "-"

// napiThreads are outer's NAPI threads while a variant runs.
type napiThreads struct {
	b    *bencher
	pids []int
}

// napiThread makes outer's NAPI a thread pinned to cpu at SCHED_FIFO 1.
// Call it once the variant's XDP program is attached (veth has NAPI only
// then); the thread goes with the program, and Close turns threaded NAPI
// off again, so that the variants after this one run as veth does by
// default.
func (b *bencher) napiThread(cpu int) (*napiThreads, error) {
	// Threads of an earlier variant may still be exiting: not ours.
	old := map[int]bool{}
	for _, pid := range commPIDs(napiComm) {
		old[pid] = true
	}
	if err := b.gateSh("echo 1 > /sys/class/net/" + lab.OuterName + "/threaded"); err != nil {
		return nil, fmt.Errorf("threaded NAPI on outer: %w", err)
	}
	n := &napiThreads{b: b}
	for deadline := time.Now().Add(2 * time.Second); len(n.pids) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			n.Close()
			return nil, fmt.Errorf("threaded NAPI on outer: no new %s* thread within 2s", napiComm)
		}
		for _, pid := range commPIDs(napiComm) {
			if !old[pid] {
				n.pids = append(n.pids, pid)
			}
		}
	}
	var set unix.CPUSet
	set.Set(cpu)
	for _, pid := range n.pids {
		if err := unix.SchedSetaffinity(pid, &set); err != nil {
			n.Close()
			return nil, fmt.Errorf("pin NAPI thread %d to CPU %d: %w", pid, cpu, err)
		}
		attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 1}
		if err := unix.SchedSetAttr(pid, &attr, 0); err != nil {
			n.Close()
			return nil, fmt.Errorf("NAPI thread %d at SCHED_FIFO: %w", pid, err)
		}
	}
	return n, nil
}

// Close turns outer's threaded NAPI off.
func (n *napiThreads) Close() error {
	return n.b.gateSh("echo 0 > /sys/class/net/" + lab.OuterName + "/threaded")
}

// runtime is the threads' time on a CPU so far, in ns.
func (n *napiThreads) runtime() (ns uint64) {
	if n == nil {
		return 0
	}
	for _, pid := range n.pids {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "schedstat"))
		if err != nil {
			continue // gone with its NAPI
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			v, _ := strconv.ParseUint(f[0], 10, 64)
			ns += v
		}
	}
	return ns
}

// commPIDs lists the processes whose name starts with prefix.
func commPIDs(prefix string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); err == nil && strings.HasPrefix(string(b), prefix) {
			pids = append(pids, pid)
		}
	}
	return pids
}
