package bench

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/xskgate/xskgate/internal/xdpprog"
)

// TestProgCost: every cost case takes the path it names (ProgCost checks
// each run's XDP action) and gets a positive cost.
func TestProgCost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF) to load and run the XDP program")
	}
	c, _, err := xdpprog.ChooseCarrier(xdpprog.CarrierAuto)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := ProgCost(&out, c, 0, 2, 20)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(progCases()) {
		t.Fatalf("%d results for %d cases", len(res), len(progCases()))
	}
	for _, r := range res {
		if len(r.Ns) != 2 || r.Ns[0] <= 0 || r.Ns[1] <= 0 {
			t.Errorf("%s: %v", r.Name, r.Ns)
		}
	}
	if !strings.Contains(out.String(), "Mpps/core") {
		t.Errorf("output:\n%s", out.String())
	}
	t.Log("\n" + out.String())
}
