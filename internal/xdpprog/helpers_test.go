package xdpprog

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// requireRoot skips tests that load BPF programs or touch namespaces.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN) to load XDP programs and create namespaces")
	}
}

// enterNetns locks the calling test goroutine to its OS thread and moves
// that thread into a fresh, unnamed network namespace. The namespace has
// no bind mount, so it disappears once the thread leaves and the handle is
// closed in Cleanup; nothing is left in /run/netns even if the test fails.
// Subtests run on other goroutines and must call enterNetns themselves.
func enterNetns(t *testing.T) {
	t.Helper()
	requireRoot(t)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get current netns: %v", err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() {
		ns.Close()
		defer orig.Close()
		if err := netns.Set(orig); err != nil {
			// Keep the thread locked: the runtime destroys a thread whose
			// goroutine exits while locked, taking the namespace with it.
			t.Errorf("restore netns: %v", err)
			return
		}
		runtime.UnlockOSThread()
	})
}

func randName(t testing.TB) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "xp" + hex.EncodeToString(b[:])
}

type vethConfig struct {
	rx, tx         int // queues of the end the program attaches to
	peerRx, peerTx int
	peerMTU        int // 0: default
}

// newVeth creates an up veth pair in the current (test) namespace and
// returns both ends, re-read so that their attributes are complete.
func newVeth(t *testing.T, c vethConfig) (a, b netlink.Link) {
	t.Helper()
	name := randName(t)
	v := &netlink.Veth{
		LinkAttrs:       netlink.LinkAttrs{Name: name + "a", NumRxQueues: c.rx, NumTxQueues: c.tx},
		PeerName:        name + "b",
		PeerNumRxQueues: uint32(c.peerRx),
		PeerNumTxQueues: uint32(c.peerTx),
		PeerMTU:         uint32(c.peerMTU),
	}
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatalf("create veth %s: %v", name, err)
	}
	// Deleting one end deletes both; the namespace going away would too.
	t.Cleanup(func() { _ = netlink.LinkDel(v) })
	for _, n := range []string{name + "a", name + "b"} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			t.Fatalf("look up %s: %v", n, err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatalf("set %s up: %v", n, err)
		}
	}
	a, err := netlink.LinkByName(name + "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err = netlink.LinkByName(name + "b")
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

// loadProgram loads the variant of the best carrier the kernel allows.
func loadProgram(t testing.TB, queues int) *Program {
	t.Helper()
	requireRoot(t)
	c, _, err := ChooseCarrier(CarrierAuto)
	if err != nil {
		t.Fatalf("ChooseCarrier: %v", err)
	}
	return loadOpts(t, queues, Options{Carrier: c})
}

// loadOpts loads variant o, skipping the test with the reason when the
// kernel refuses the helper the carrier needs.
func loadOpts(t testing.TB, queues int, o Options) *Program {
	t.Helper()
	requireRoot(t)
	if _, _, err := ChooseCarrier(o.Carrier); err != nil {
		t.Skipf("carrier %s: %v", o.Carrier, err)
	}
	p, err := Load(queues, o)
	if err != nil {
		t.Fatalf("Load(%d, %+v): %v", queues, o, err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Program.Close: %v", err)
		}
	})
	return p
}

// carriers are the variants every program test runs with.
var carriers = []Carrier{CarrierMeta, CarrierHead, CarrierNone}

// testFrame is an Ethernet/IPv4/UDP frame to 198.18.0.2 of n bytes.
func testFrame(n int) []byte {
	f := make([]byte, n)
	copy(f[0:6], net.HardwareAddr{0x02, 0, 0, 0, 0, 2})
	copy(f[6:12], net.HardwareAddr{0x02, 0, 0, 0, 0, 1})
	f[12], f[13] = 0x08, 0x00
	ip := f[14:]
	ip[0] = 0x45
	l := n - 14
	ip[2], ip[3] = byte(l>>8), byte(l)
	ip[8], ip[9] = 64, 17
	copy(ip[12:16], net.IPv4(198, 18, 0, 1).To4())
	copy(ip[16:20], net.IPv4(198, 18, 0, 2).To4())
	udp := ip[20:]
	udp[0], udp[1], udp[2], udp[3] = 0x30, 0x39, 0x30, 0x39
	ul := l - 20
	udp[4], udp[5] = byte(ul>>8), byte(ul)
	for i := 8; i < ul; i++ {
		udp[i] = byte(i)
	}
	return f
}
