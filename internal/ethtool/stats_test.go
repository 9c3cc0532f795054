package ethtool

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inNetns moves the test's thread into a fresh unnamed namespace (gone
// when the test ends, even on failure) with an up veth pair a|b.
func inNetns(t *testing.T) (a, b netlink.Link) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN, CAP_BPF) for a namespace, a veth pair and an XDP program")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Close()
		defer orig.Close()
		if err := netns.Set(orig); err != nil {
			t.Errorf("restore netns: %v", err) // the thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
	})
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "xea"}, PeerName: "xeb"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"xea", "xeb"} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	a, _ = netlink.LinkByName("xea")
	b, _ = netlink.LinkByName("xeb")
	return a, b
}

// deep calls fn under depth frames of ~200 bytes each: a call at a new
// depth may find the goroutine's stack too small, and the runtime then
// moves it, which is what broke the uintptr-passing ioctl.
func deep(depth int, fn func()) {
	var pad [200]byte
	if depth == 0 {
		fn()
		return
	}
	pad[depth%200] = byte(depth)
	deep(depth-1, fn)
	runtime.KeepAlive(pad)
}

// TestStatsVeth: the reader gives veth's statistics, the same as
// `ethtool -S` where it is installed, with the peer's ifindex right, at
// every stack depth (safchain/ethtool's Stats read zero statistics when a
// call moved the stack).
func TestStatsVeth(t *testing.T) {
	a, b := inNetns(t)
	r, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	st, err := r.Stats("xea")
	if err != nil {
		t.Fatal(err)
	}
	if st["peer_ifindex"] != uint64(b.Attrs().Index) {
		t.Fatalf("peer_ifindex %d, want %d; stats %v", st["peer_ifindex"], b.Attrs().Index, st)
	}
	if _, ok := st["rx_queue_0_xdp_tx_errors"]; !ok {
		t.Fatalf("no rx_queue_0_xdp_tx_errors in %v", st)
	}
	if path, err := exec.LookPath("ethtool"); err == nil {
		out, err := exec.Command(path, "-S", "xea").Output()
		if err != nil {
			t.Fatalf("ethtool -S: %v", err)
		}
		n := 0
		for _, line := range strings.Split(string(out), "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
			if !ok {
				continue
			}
			n++
			if want, _ := strconv.ParseUint(v, 10, 64); k != "peer_ifindex" && !strings.Contains(k, "bytes") && !strings.Contains(k, "packets") && st[k] != want {
				t.Errorf("%s = %d, ethtool -S says %d", k, st[k], want)
			}
		}
		if n != len(st) {
			t.Errorf("%d statistics, ethtool -S shows %d", len(st), n)
		}
	}
	for depth := range 400 {
		deep(depth, func() {
			st, err := r.Stats("xea")
			if err != nil {
				t.Fatalf("depth %d: %v", depth, err)
			}
			if st["peer_ifindex"] != uint64(b.Attrs().Index) || len(st) < 3 {
				t.Fatalf("depth %d: %d statistics, peer_ifindex %d, want %d", depth, len(st), st["peer_ifindex"], b.Attrs().Index)
			}
		})
	}
	_ = a
	if _, err := r.Stats("nosuchif0"); err == nil {
		t.Fatal("no error for a missing interface")
	}
	if _, err := r.Stats(strings.Repeat("x", 20)); err == nil {
		t.Fatal("no error for a name too long")
	}
}

// TestSumXDPTxErrors: a veth whose peer has no NAPI fails every XDP_TX;
// Sum counts exactly the frames an XDP_TX program bounced.
func TestSumXDPTxErrors(t *testing.T) {
	a, b := inNetns(t)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "xdp_tx", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 3 /* XDP_TX */), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	att, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: a.Attrs().Index, Flags: link.XDPDriverMode})
	if err != nil {
		t.Fatal(err)
	}
	defer att.Close()
	r, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	isTxErr := func(name string) bool { return strings.Contains(name, "xdp_tx_err") }
	before, found, err := r.Sum("xea", isTxErr)
	if err != nil || !found {
		t.Fatalf("Sum: %d, %v, %v", before, found, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrLinklayer{Ifindex: b.Attrs().Index, Halen: 6}
	copy(sa.Addr[:], a.Attrs().HardwareAddr)
	frame := make([]byte, 60)
	copy(frame[0:6], a.Attrs().HardwareAddr)
	copy(frame[6:12], b.Attrs().HardwareAddr)
	frame[12], frame[13] = 0x88, 0xb5 // local experimental ethertype
	const n = 100
	for range n {
		if err := unix.Sendto(fd, frame, 0, sa); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		after, _, err := r.Sum("xea", isTxErr)
		if err != nil {
			t.Fatal(err)
		}
		if after-before == n {
			return
		}
		if after-before > n || time.Now().After(deadline) {
			t.Fatalf("xdp_tx_errors grew by %d, want %d", after-before, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
