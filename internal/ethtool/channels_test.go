package ethtool

import (
	"errors"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestChannelsVeth: a veth's channels read back as set, through Do like
// the statistics, at every stack depth (safchain/ethtool's GetChannels
// read zero queues when a call moved the stack); a veth has separate rx
// and tx channels, none combined.
func TestChannelsVeth(t *testing.T) {
	inNetns(t)
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "xqa", NumTxQueues: 4, NumRxQueues: 4},
		PeerName: "xqb", PeerNumTxQueues: 4, PeerNumRxQueues: 4}); err != nil {
		t.Fatal(err)
	}
	r, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ch, err := r.Channels("xqa")
	if err != nil {
		t.Fatal(err)
	}
	if ch != (Channels{RX: 4, TX: 4, MaxRX: 4, MaxTX: 4}) {
		t.Fatalf("channels %+v, want 4 rx and 4 tx of at most 4, none combined", ch)
	}
	for _, c := range [][2]int{{1, 1}, {2, 3}, {4, 4}} {
		if err := r.SetChannels("xqa", c[0], c[1]); err != nil {
			t.Fatalf("set %v: %v", c, err)
		}
		if ch, err := r.Channels("xqa"); err != nil || ch.RX != c[0] || ch.TX != c[1] {
			t.Fatalf("after set %v: %+v, %v", c, ch, err)
		}
	}
	if err := r.SetChannels("xqa", 2, 3); err != nil {
		t.Fatal(err)
	}
	for depth := range 400 {
		deep(depth, func() {
			if ch, err := r.Channels("xqa"); err != nil || ch.RX != 2 || ch.TX != 3 {
				t.Fatalf("depth %d: %+v, %v; want 2 rx, 3 tx", depth, ch, err)
			}
		})
	}
	if ch, err := ReadChannels("xqb"); err != nil || ch.RX != 4 || ch.TX != 4 {
		t.Fatalf("ReadChannels of the peer: %+v, %v", ch, err)
	}
	if _, err := r.Channels("nosuchif0"); !errors.Is(err, unix.ENODEV) {
		t.Fatalf("missing interface: %v, want ENODEV", err)
	}
	if _, err := r.Channels(strings.Repeat("x", 20)); err == nil {
		t.Fatal("no error for a name too long")
	}
	if err := r.Do("xqa", nil); err == nil {
		t.Fatal("Do without a command word: no error")
	}
}
