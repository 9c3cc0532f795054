package gate_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/gate"
	"github.com/xskgate/xskgate/internal/integrity"
	"github.com/xskgate/xskgate/internal/lab"
	"github.com/xskgate/xskgate/internal/traffic"
	"github.com/xskgate/xskgate/internal/xdpprog"
)

const port = 5201

// openGate opens and starts a gate in l's gate namespace with carrier c
// and every integrity check on, skipping the test with the reason when the
// kernel refuses the carrier.
func openGate(t *testing.T, l *lab.Lab, c xdpprog.Carrier, skew int32) *gate.Gate {
	t.Helper()
	return openGateWith(t, l, c, skew, nil)
}

// openGateWith is openGate with the configuration changed by mod first.
func openGateWith(t *testing.T, l *lab.Lab, c xdpprog.Carrier, skew int32, mod func(*gate.Config)) *gate.Gate {
	t.Helper()
	if _, _, err := xdpprog.ChooseCarrier(c); err != nil {
		t.Skipf("carrier %s: %v", c, err)
	}
	ic := integrity.DefaultConfig()
	var g *gate.Gate
	if err := l.Do(l.GateNS, func() error {
		var err error
		cfg := gate.Config{Outer: lab.OuterName, Inner: lab.InnerName, Queues: 2,
			Carrier: c, LenSkew: skew, Integrity: &ic}
		if mod != nil {
			mod(&cfg)
		}
		g, err = gate.Open(cfg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got, _ := g.Carrier(); got != c && c != xdpprog.CarrierAuto {
		t.Fatalf("gate chose carrier %s, asked for %s", got, c)
	}
	g.Start()
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("gate close: %v", err)
		}
	})
	return g
}

// capture records every frame arriving at ifname in namespace ns
// (AF_PACKET, incoming only) until stop is called.
type capture struct {
	mu     sync.Mutex
	frames [][]byte
	fd     int
	done   chan struct{}
	quit   atomic.Bool
}

func startCapture(t *testing.T, l *lab.Lab, ns, ifname string) *capture {
	t.Helper()
	c := &capture{done: make(chan struct{})}
	err := l.Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		// Room for a burst: a dropped capture proves nothing either way.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
		tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return err
		}
		c.fd = fd
		return nil
	})
	if err != nil {
		t.Fatalf("capture on %s: %v", ifname, err)
	}
	fd := c.fd
	go func() {
		defer close(c.done)
		buf := make([]byte, 65536)
		for !c.quit.Load() {
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err == unix.EAGAIN || err == unix.EINTR {
				continue // SO_RCVTIMEO: look at quit again
			}
			if err != nil {
				return
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			c.mu.Lock()
			c.frames = append(c.frames, append([]byte(nil), buf[:n]...))
			c.mu.Unlock()
		}
	}()
	t.Cleanup(c.stop)
	return c
}

// stop ends the capture: the reader sees quit within its receive timeout,
// and the socket is closed only after it returned (closing under a reader
// raced, and could hand it a reused descriptor).
func (c *capture) stop() {
	if c.fd > 0 {
		c.quit.Store(true)
		<-c.done
		unix.Close(c.fd)
		c.fd = -1
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// checkWire fails the test for any captured frame that carries an XDP
// program record, or is not a well-formed Ethernet frame that gopacket
// decodes without error, and returns how many TCP segments it saw.
func checkWire(t *testing.T, where string, frames [][]byte) (tcp int) {
	t.Helper()
	for i, f := range frames {
		if len(f) >= 4 {
			if m := binary.LittleEndian.Uint32(f); m == xdpprog.HeadMagic || m == xdpprog.MetaMagic {
				t.Fatalf("%s: frame %d starts with an XDP program record (magic %#x): % x", where, i, m, f[:min(len(f), 32)])
			}
		}
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		if el := p.ErrorLayer(); el != nil {
			t.Fatalf("%s: frame %d does not decode: %v: % x", where, i, el.Error(), f[:min(len(f), 64)])
		}
		if p.Layer(layers.LayerTypeTCP) != nil {
			tcp++
		}
	}
	return tcp
}

// TestHeadCarrierOnTheWire forwards verified TCP (SHA-256 both ways, IPv4
// and IPv6) through the gate with the record prepended to every frame in
// XDP, and captures what reaches both far ends: no frame carries a record,
// and every one decodes.
func TestHeadCarrierOnTheWire(t *testing.T) {
	l := lab.ForTest(t, lab.Config{Queues: 2, StaticNeighbors: true})
	g := openGate(t, l, xdpprog.CarrierHead, 0)
	l.ServeForTest(t, port)
	atServer := startCapture(t, l, l.ServerNS, lab.HostIfName)
	atClient := startCapture(t, l, l.ClientNS, lab.HostIfName)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const conns, size = 4, 1 << 20
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for k := range conns {
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
				errs <- fmt.Errorf("dial %s: %w", dst, err)
				return
			}
			if res := traffic.Exchange(ctx, c, uint64(k+1), size, size); res.Err != nil {
				errs <- fmt.Errorf("%s: %w", dst, res.Err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	atServer.stop()
	atClient.stop()
	ts := checkWire(t, "server eth0", atServer.frames)
	tc := checkWire(t, "client eth0", atClient.frames)
	// 1 MiB each way per connection is hundreds of segments per side.
	if ts < 100*conns || tc < 100*conns {
		t.Fatalf("captured %d TCP segments at the server and %d at the client: too few to prove anything", ts, tc)
	}
	if n := g.Checks.Counts(); n != ([integrity.NumClasses]uint64{}) {
		t.Fatalf("violations: %v", n)
	}
	var stripped uint64
	for _, w := range g.Stats() {
		for _, p := range w.Ports {
			stripped += p.RxPackets
			// veth has no zero-copy: auto mode got copy, per socket.
			if p.BindMode != gate.BindCopy {
				t.Errorf("%s q%d: bind mode %q, want %q", p.Iface, p.Queue, p.BindMode, gate.BindCopy)
			}
			if p.Drops["no_record"] != 0 {
				t.Fatalf("%s q%d: %d frames without their record", p.Iface, p.Queue, p.Drops["no_record"])
			}
		}
	}
	t.Logf("%d frames received with a record and stripped; captured %d TCP segments at the server, %d at the client, none with a record", stripped, ts, tc)
}

// TestLenMismatchEachCarrier plants a record whose length is 7 bytes off
// in every frame, with each carrier the kernel allows: the integrity checks
// must catch each frame as meta_len_mismatch, and none reaches the server.
func TestLenMismatchEachCarrier(t *testing.T) {
	for _, c := range []xdpprog.Carrier{xdpprog.CarrierMeta, xdpprog.CarrierHead} {
		t.Run(c.String(), func(t *testing.T) {
			l := lab.ForTest(t, lab.Config{Queues: 2, StaticNeighbors: true})
			g := openGate(t, l, c, 7)
			const n = 20
			var sent int
			if err := l.Do(l.ClientNS, func() error {
				u, err := net.Dial("udp4", netip.AddrPortFrom(l.ServerIP4, 9).String())
				if err != nil {
					return err
				}
				defer u.Close()
				for range n {
					if _, err := u.Write([]byte("xskgate length mismatch probe")); err == nil {
						sent++
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for g.Checks.Counts()[integrity.MetaLenMismatch] < uint64(sent) {
				if time.Now().After(deadline) {
					t.Fatalf("after %d datagrams, counts %v", sent, g.Checks.Counts())
				}
				time.Sleep(10 * time.Millisecond)
			}
			v := g.Checks.Violations()[0]
			if v.Class != integrity.MetaLenMismatch || v.Expected != v.Got+7 {
				t.Fatalf("first violation %v, want meta_len_mismatch 7 bytes off", v)
			}
			for _, w := range g.Stats() {
				for _, p := range w.Ports {
					if p.Iface == lab.OuterName && p.Verdicts["forward"] != 0 {
						t.Fatalf("%s q%d forwarded %d frames with a bad record", p.Iface, p.Queue, p.Verdicts["forward"])
					}
				}
			}
			t.Logf("%d datagrams, %d caught: %v", sent, g.Checks.Counts()[integrity.MetaLenMismatch], v)
		})
	}
}
