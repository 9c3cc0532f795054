package demo

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/xskgate/xskgate/internal/gate"
	"github.com/xskgate/xskgate/internal/lab"
	"github.com/xskgate/xskgate/internal/xdpprog"
)

// TestEndToEnd runs the demo: TCP over IPv4 and IPv6 through the gate on
// two queues, every byte verified both ways, ping both families, and the
// frames provably crossed AF_XDP: the server's kernel counted exactly what
// the gate's outer sockets received and forwarded.
func TestEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for namespaces, XDP and AF_XDP: run the tests as root")
	}
	for _, mode := range []xdpprog.Mode{xdpprog.ModeNative, xdpprog.ModeGeneric} {
		t.Run(mode.String(), func(t *testing.T) {
			var out bytes.Buffer
			// Unique per run: a run killed mid-way (SIGKILL) leaves its lab
			// behind, and the next run must not trip over it.
			prefix := fmt.Sprintf("xge2e%s%04x", mode.String()[:3], rand.IntN(1<<16))
			opts := Options{Duration: 3 * time.Second, Conns: 6, Size: 1 << 20, XDPMode: mode, Out: &out, Prefix: prefix}
			if mode == xdpprog.ModeGeneric {
				// Generic XDP runs on whole skbs: a neighbour's TSO/GSO
				// aggregates (up to 64 KiB) do not fit a UMEM frame (the
				// kernel counts them in rx_dropped) or exceed the other
				// side's MTU when sent on (EBUSY). Native XDP on veth turns
				// the peer's GSO off itself; generic XDP cannot, and the
				// gate says so at start. So here, and only here, the
				// neighbours segment in software, with checksum offload
				// still on.
				opts.Hook = func(l *lab.Lab, _ *gate.Gate) error {
					for _, ns := range []string{l.ClientNS, l.ServerNS} {
						if out, err := l.Command(t.Context(), ns, "ethtool", "-K", lab.HostIfName, "tso", "off", "gso", "off").CombinedOutput(); err != nil {
							return fmt.Errorf("ethtool -K tso off gso off in %s: %v: %s", ns, err, out)
						}
					}
					return nil
				}
			}
			rep, err := Run(t.Context(), opts)
			t.Log("\n" + out.String())
			if err != nil {
				t.Fatal(err)
			}
			if rep.ConnsOK < 6 || rep.ConnsKO != 0 {
				t.Fatalf("connections ok %d failed %d", rep.ConnsOK, rep.ConnsKO)
			}
			if _, err := exec.LookPath("ping"); err == nil && (rep.Ping4 != "ok" || rep.Ping6 != "ok") {
				t.Fatalf("ping v4 %q v6 %q", rep.Ping4, rep.Ping6)
			}
			o, i := rep.Sides[0], rep.Sides[1]
			// Every frame the server's eth0 received was sent by inner's
			// AF_XDP TX, and came from outer's RX: nothing else connects.
			if o.RxPackets == 0 || rep.ServerRxPackets != i.TxPackets || i.TxPackets != o.Verdicts[0] {
				t.Fatalf("server got %d, inner tx %d, outer forwarded %d", rep.ServerRxPackets, i.TxPackets, o.Verdicts[0])
			}
			if rep.ClientRxPackets != o.TxPackets {
				t.Fatalf("client got %d, outer tx %d", rep.ClientRxPackets, o.TxPackets)
			}
			if !rep.AccountingAtStop.Balanced() || rep.AccountingAtStop.Tx != 0 {
				t.Fatalf("accounting at stop %+v", rep.AccountingAtStop)
			}
			if !rep.Accounting.Balanced() {
				t.Fatalf("accounting under load %+v", rep.Accounting)
			}
			// No fault injected: the checks saw every hand-over and must
			// report nothing, and the protection dropped nothing legitimate.
			if rep.Violations == nil || len(rep.Violations) != 0 {
				t.Fatalf("violations without a fault: %v %v", rep.Violations, rep.FirstViolations)
			}
			if rep.Protection == nil || rep.Protection.Count("", "pass", "") == 0 || rep.Protection.Count("", "drop", "") != 0 {
				t.Fatalf("protection: %+v", rep.Protection)
			}
			if _, err := lab.Open(prefix); err == nil {
				t.Errorf("lab %s left behind", prefix)
			}
		})
	}
}

// TestInterruptCleansUp cancels the demo mid-traffic, as Ctrl-C does, and
// checks nothing is left: no namespace, so no link and no XDP program.
func TestInterruptCleansUp(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: run the tests as root")
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	time.AfterFunc(2500*time.Millisecond, cancel)
	prefix := fmt.Sprintf("xgint%04x", rand.IntN(1<<16))
	rep, err := Run(ctx, Options{Duration: 30 * time.Second, Conns: 4, Size: 1 << 20, Prefix: prefix})
	if err == nil {
		t.Fatal("interrupted demo returned no error")
	}
	if rep != nil && !rep.AccountingAtStop.Balanced() {
		t.Fatalf("accounting %+v", rep.AccountingAtStop)
	}
	if _, err := lab.Open(prefix); err == nil {
		t.Fatalf("lab %s still exists after interrupt", prefix)
	}
}
