package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xskgate/xskgate/internal/lab"
)

// External is an AF_XDP l2fwd program measured as one more path, in the
// same interleaved rounds, with the same generator and pinning: libxdp's
// xdpsock ("xdpsock -l"), the C reference. It is not part of xskgate; the
// README says how to build it. It runs in the gate namespace on outer
// queue 0, pinned to GateCPU at the worker's nice value, and sends every
// frame back out of outer with the MAC addresses swapped, so its frames
// are counted at the client's eth0 (with the same tc drop sink as the
// server's): the same work as xskgate's forward to inner (copy-mode RX in
// outer's NAPI on GenCPU, copy-mode TX into a veth on GateCPU).
type External struct {
	Path string   // the program
	Args []string // before "-i outer -q 0"; default "-l -c -Q" (l2fwd, copy mode, quiet)
	Env  []string // added to the environment, e.g. LD_PRELOAD=...
}

func (x *External) args() []string {
	a := x.Args
	if len(a) == 0 {
		a = []string{"-l", "-c", "-Q"}
	}
	return append(append([]string(nil), a...), "-i", lab.OuterName, "-q", "0")
}

// Command is how the bench starts it, for the output.
func (x *External) Command(cpu, nice int) string {
	env := strings.Join(x.Env, " ")
	if env != "" {
		env += " "
	}
	return fmt.Sprintf("%staskset -c %d nice -n %d %s %s", env, cpu, nice, x.Path, strings.Join(x.args(), " "))
}

// startExternal starts the external l2fwd and waits until its XDP program
// is on outer; the teardown stops it (SIGINT, so it detaches what it
// attached; SIGKILL after 3 s) and removes any program it left. Right
// after the previous path's sockets closed, the kernel may still hold the
// queue's buffer pool (released from a work queue): xdpsock's bind then
// fails with EBUSY and it exits; it is started again, as xskgate's own
// bind retries (xsk.bindRetry), for up to 2 s.
func (b *bencher) startExternal() (*dut, error) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		d, busy, err := b.startExternalOnce()
		if !busy || time.Now().After(deadline) {
			return d, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startExternalOnce is one attempt of startExternal; busy reports that the
// program exited because the queue was still bound (EBUSY).
func (b *bencher) startExternalOnce() (d *dut, busy bool, err error) {
	x, l := b.o.External, b.l
	if x == nil || x.Path == "" {
		return nil, false, fmt.Errorf("no external l2fwd program: give its path with --xdpsock")
	}
	args := append([]string{"-c", strconv.Itoa(b.o.GateCPU), "nice", "-n", strconv.Itoa(b.o.DUTNice), x.Path}, x.args()...)
	cmd := l.Command(context.Background(), l.GateNS, "taskset", args...)
	cmd.Env = append(os.Environ(), x.Env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, false, fmt.Errorf("start %s: %w", x.Path, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		select {
		case <-exited:
		default:
			cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-exited:
			case <-time.After(3 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
		}
		// A program it left attached would take the next path's frames.
		l.Command(context.Background(), l.GateNS, "ip", "link", "set", "dev", lab.OuterName, "xdp", "off").Run()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			stop()
			busy := strings.Contains(out.String(), "Device or resource busy")
			return nil, busy, fmt.Errorf("%s exited before attaching (%v): %s", x.Path, err, strings.TrimSpace(lastLines(out.String(), 5)))
		default:
		}
		if attached, _ := b.xdpAttached(); attached {
			// Its sockets are bound once the program is on; give it a
			// moment to post its FILL ring.
			time.Sleep(200 * time.Millisecond)
			return &dut{ext: cmd.Process.Pid, teardown: stop}, false, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, false, fmt.Errorf("%s attached no XDP program to %s within 10 s: %s", x.Path, lab.OuterName, strings.TrimSpace(lastLines(out.String(), 5)))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// xdpAttached reports whether outer has an XDP program.
func (b *bencher) xdpAttached() (bool, error) {
	out, err := b.l.Command(context.Background(), b.l.GateNS, "ip", "-d", "link", "show", "dev", lab.OuterName).Output()
	if err != nil {
		return false, err
	}
	return strings.Contains(string(out), "prog/xdp"), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
