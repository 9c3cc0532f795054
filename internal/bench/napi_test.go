package bench

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/lab"
)

// TestNAPIThread: with an XDP program on outer, napiThread makes outer's
// NAPI a thread pinned to the CPU asked at SCHED_FIFO, whose run time grows
// with the frames it receives; it goes with the program.
func TestNAPIThread(t *testing.T) {
	l := lab.ForTest(t, lab.Config{Queues: 1})
	drop := returnProgram(t, "xskgate_drop", 1 /* XDP_DROP */)
	b := &bencher{l: l, o: Options{GateCPU: 0}}
	att, err := b.attachXDP(l.GateNS, l.OuterIndex, drop)
	if err != nil {
		t.Fatal(err)
	}
	n, err := b.napiThread(0)
	if err != nil {
		att.Close()
		t.Fatal(err)
	}
	defer n.Close()
	for _, pid := range n.pids {
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(pid, &set); err != nil || set.Count() != 1 || !set.IsSet(0) {
			t.Errorf("NAPI thread %d: affinity %v (%v), want CPU 0 alone", pid, set, err)
		}
		if a, err := unix.SchedGetAttr(pid, 0); err != nil || a.Policy != unix.SCHED_FIFO {
			t.Errorf("NAPI thread %d: policy %+v (%v), want SCHED_FIFO", pid, a, err)
		}
	}
	s0, err := b.napiSnap(n)
	if err != nil {
		t.Fatal(err)
	}
	// Frames from the client's eth0 into outer, which drops them in XDP.
	const frames = 2000
	if err := l.Do(l.ClientNS, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Ifindex: l.ClientIndex, Halen: 6}
		copy(sa.Addr[:], net.HardwareAddr(l.ServerMAC))
		f := make([]byte, 60)
		copy(f, l.ServerMAC)
		copy(f[6:], l.ClientMAC)
		f[12], f[13] = 0x88, 0xb5 // local experimental EtherType
		// veth's ring holds 256 frames: when the NAPI thread is behind,
		// send(2) says ENOBUFS and the frame was not sent; wait and retry.
		deadline := time.Now().Add(10 * time.Second)
		for sent := 0; sent < frames; {
			err := unix.Sendto(fd, f, 0, sa)
			switch {
			case err == nil:
				sent++
			case errors.Is(err, unix.ENOBUFS) && time.Now().Before(deadline):
				time.Sleep(time.Millisecond)
			default:
				return fmt.Errorf("sendto after %d of %d frames: %w", sent, frames, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var c NAPICost
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s1, err := b.napiSnap(n)
		if err != nil {
			t.Fatal(err)
		}
		if s1.xdp-s0.xdp >= frames {
			c = napiCost(s0, s1, false)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outer's XDP saw %d of %d frames", s1.xdp-s0.xdp, frames)
		}
	}
	if c.NAPINs <= 0 || c.WorkerNs != 0 {
		t.Errorf("cost %+v: want the NAPI thread's time per frame, no worker", c)
	}
	att.Close()
	for deadline := time.Now().Add(5 * time.Second); len(commPIDs(napiComm)) > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("NAPI threads %v stay after the program is detached", commPIDs(napiComm))
		}
	}
}
