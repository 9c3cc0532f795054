package gate_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/xskgate/xskgate/internal/gate"
	"github.com/xskgate/xskgate/internal/lab"
	"github.com/xskgate/xskgate/internal/traffic"
	"github.com/xskgate/xskgate/internal/xdpprog"
)

// TestDefaultOffloads: the neighbours keep their default offloads (TX
// checksum offload on, as every container has), so their TCP and UDP
// leave with partial checksums. Through the gate: verified TCP (SHA-256
// both ways, IPv4 and IPv6) and UDP both ways arrive intact, and the
// counters show the checksums the gate completed on each side: by the
// kernel at TX where it takes AF_XDP TX metadata (Linux 6.11+), and in
// software when asked (SoftwareChecksums).
func TestDefaultOffloads(t *testing.T) {
	for _, software := range []bool{false, true} {
		name := "kernel"
		if software {
			name = "software"
		}
		t.Run(name, func(t *testing.T) { testDefaultOffloads(t, software) })
	}
}

func testDefaultOffloads(t *testing.T, software bool) {
	l := lab.ForTest(t, lab.Config{Queues: 2, StaticNeighbors: true})
	for _, ns := range []string{l.ClientNS, l.ServerNS} {
		out, err := l.Command(t.Context(), ns, "ethtool", "-k", lab.HostIfName).CombinedOutput()
		if err == nil && !bytes.Contains(out, []byte("tx-checksumming: on")) {
			t.Fatalf("%s: the lab changed the host end's offloads:\n%s", ns, out)
		}
	}
	g := openGateWith(t, l, xdpprog.CarrierAuto, 0, func(c *gate.Config) { c.SoftwareChecksums = software })
	kernel := g.Umem.TxMetadataLen() > 0
	if !software && !kernel {
		t.Skip("this kernel refuses AF_XDP TX metadata (XDP_UMEM_TX_METADATA_LEN, Linux 6.11+): the software subtest covers it")
	}
	l.ServeForTest(t, port)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for k := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := netip.AddrPortFrom(l.ServerIP4, port)
			if k%2 == 1 {
				dst = netip.AddrPortFrom(l.ServerIP6, port)
			}
			var c net.Conn
			if err := l.Do(l.ClientNS, func() error {
				var err error
				c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", dst.String())
				return err
			}); err != nil {
				errs <- err
				return
			}
			if res := traffic.Exchange(ctx, c, uint64(k+1), 1<<20, 1<<20); res.Err != nil {
				errs <- fmt.Errorf("%s: %w", dst, res.Err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, srv := range []netip.Addr{l.ServerIP4, l.ServerIP6} {
		udpEcho(t, l, srv)
	}
	var completed, offloaded, stale [2]uint64 // outer, inner
	for _, w := range g.Stats() {
		for _, p := range w.Ports {
			s := 1
			if p.Iface == lab.OuterName {
				s = 0
			}
			completed[s] += p.ChecksumsCompleted
			offloaded[s] += p.ChecksumsOffloaded
			stale[s] += p.ChecksumsStale
		}
	}
	t.Logf("partial checksums: %d from the client side, %d from the server side; completed by the kernel at TX on inner %d, on outer %d",
		completed[0], completed[1], offloaded[1], offloaded[0])
	if completed[0] == 0 || completed[1] == 0 {
		t.Fatalf("no partial checksum completed (outer %d, inner %d): are the neighbours' offloads on?", completed[0], completed[1])
	}
	switch {
	case stale != [2]uint64{}:
		t.Fatalf("stale partial checksums %v", stale)
	case software && offloaded != [2]uint64{}:
		t.Fatalf("asked for software checksums, yet %v left to the kernel", offloaded)
	case !software && (offloaded[0] == 0 || offloaded[1] == 0):
		t.Fatalf("the kernel completed no checksum on one side (outer %d, inner %d)", offloaded[0], offloaded[1])
	}
}

// udpEcho sends 20 datagrams from the client to an echo on srv and reads
// each one back: both directions cross the gate with partial checksums.
func udpEcho(t *testing.T, l *lab.Lab, srv netip.Addr) {
	t.Helper()
	var pc net.PacketConn
	if err := l.Do(l.ServerNS, func() error {
		var err error
		pc, err = net.ListenPacket("udp", netip.AddrPortFrom(srv, 9).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	var c net.Conn
	if err := l.Do(l.ClientNS, func() error {
		var err error
		c, err = net.Dial("udp", netip.AddrPortFrom(srv, 9).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2048)
	for i := range 20 {
		msg := bytes.Repeat([]byte{byte(i)}, 100+i*50)
		got := false
		for try := 0; try < 5 && !got; try++ { // UDP: a datagram may be lost; a wrong one may not
			c.Write(msg)
			c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			n, err := c.Read(buf)
			if err == nil {
				if !bytes.Equal(buf[:n], msg) {
					t.Fatalf("UDP %s: datagram %d came back altered", srv, i)
				}
				got = true
			}
		}
		if !got {
			t.Fatalf("UDP %s: datagram %d never came back", srv, i)
		}
	}
}
