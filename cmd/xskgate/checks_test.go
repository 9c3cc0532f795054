package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/xskgate/xskgate/internal/integrity"
	"github.com/xskgate/xskgate/internal/xsk"
)

// TestChecksZeroCopy: with sockets bound in zero-copy the order check
// stays off whatever asks for it (reload, `xskgate checks`), and status
// and the checks command say why.
func TestChecksZeroCopy(t *testing.T) {
	area := make([]byte, 64*4096)
	u, err := xsk.UmemOn(area, xsk.UmemConfig{FrameSize: 4096, NumFrames: 64})
	if err != nil {
		t.Fatal(err)
	}
	cfg := integrity.DefaultConfig()
	cfg.ZeroCopy = true
	c, err := integrity.New(u, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetEnabled(integrity.CheckOrder, true) // what a reload asking for it does
	var order checkState
	for _, s := range checkStates(c) {
		if s.Name == "order" {
			order = s
		} else if !s.On || s.Unavailable != "" {
			t.Errorf("%+v", s)
		}
	}
	if order.On || !strings.Contains(order.Unavailable, "zero-copy") {
		t.Fatalf("order check %+v, want off and unavailable in zero-copy", order)
	}
	var b bytes.Buffer
	printStatus(&b, statusReply{Integrity: integrityStatus{Checks: checkStates(c)}})
	if !strings.Contains(b.String(), "order off (unavailable: the sockets are bound in zero-copy mode") {
		t.Fatalf("status does not say why the order check is off:\n%s", b.String())
	}
}
