package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/xskgate/xskgate/internal/lab"
	"github.com/xskgate/xskgate/internal/xsk"
)

// protectedConfig writes a config with the protection (and so the first
// line) on, for the lab's server prefix.
func protectedConfig(t *testing.T) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "xskgate.yaml")
	cfg := `integrity:
  dump_dir: ""
protection:
  enabled: true
  prefixes: [198.18.0.0/24]
  allowlist: [198.19.113.0/24]
  rules:
    - name: web
      scope: 198.18.0.0/24
      mode: mitigate
      out_of_state: {mode: monitor, rate: 500, burst: 2500}
      syn_flood: {rate: 1000, burst: 5000, per_source_rate: 50}
`
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestStatus: `xskgate status` against a running daemon shows, per
// interface, the XDP program id the kernel reports attached (checked
// against rtnetlink, as ip link shows it) and its mode, the bind mode the
// kernel granted per queue, need_wakeup, the record carrier, the
// integrity checks as switched now, and the protection's rules, tables and
// first-line maps.
func TestStatus(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: run the tests as root")
	}
	l := lab.ForTest(t, lab.Config{Queues: 2})
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	startDaemon(t, l, "--config", protectedConfig(t), "--control", sock, "--metrics", "")
	if out, err := exec.Command(bin, "checks", "--control", sock, "poison=off").CombinedOutput(); err != nil {
		t.Fatalf("checks poison=off: %v %s", err, out)
	}
	out, err := exec.Command(bin, "status", "--control", sock).CombinedOutput()
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	s := string(out)
	t.Logf("xskgate status:\n%s", s)
	ids := map[string]uint32{}
	err = l.Do(l.GateNS, func() error {
		for _, name := range []string{lab.OuterName, lab.InnerName} {
			ln, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			if x := ln.Attrs().Xdp; x == nil || !x.Attached {
				return fmt.Errorf("%s has no XDP program", name)
			}
			ids[name] = ln.Attrs().Xdp.ProgId
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"record carrier: ",
		"partial checksums: " + wantChecksums(),
		fmt.Sprintf("outer: %s (ifindex %d)", lab.OuterName, l.OuterIndex),
		fmt.Sprintf("inner: %s (ifindex %d)", lab.InnerName, l.InnerIndex),
		fmt.Sprintf(", id %d, bpf_link ", ids[lab.OuterName]),
		fmt.Sprintf("kernel: program id %d attached, native", ids[lab.OuterName]),
		fmt.Sprintf("kernel: program id %d attached, native", ids[lab.InnerName]),
		"attached native, with the first line",
		"integrity checks: ownership on, order on, poison off, bounds on, metadata on, ip_length on",
		"protection: enabled, 2 workers",
		"allowlist 1 prefixes",
		"first line in XDP: stages allowlist, blocklist, penalty_box, out_of_state, syn_cookie",
		"xskgate_flows", "xskgate_penalty",
	}
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("status lacks %q", w)
		}
	}
	// Every queue of both sides: copy mode (veth has no zero-copy), asked
	// auto, need_wakeup on; only the first socket registered the UMEM.
	// need_wakeup comes from sock_diag where the kernel has it (marked *
	// where it has not: then it is the configured value).
	rows := regexp.MustCompile(`(?m)^  ([01]) +copy +auto +yes\*? +(yes|no) +2048 +2048 +2048 +2048 +32$`).FindAllStringSubmatch(s, -1)
	if len(rows) != 4 {
		t.Errorf("want 4 socket rows in copy mode with need_wakeup, got %d", len(rows))
	} else if rows[0][2] != "no" || rows[1][2] != "yes" {
		t.Errorf("shared umem column: %v", rows)
	}
	if !regexp.MustCompile(`(?m)^  web +198\.18\.0\.0/24 +monitor +mitigate +challenge +yes$`).MatchString(s) {
		t.Errorf("rule web's row (out_of_state monitor, syn_flood mitigate by challenge, per source) is missing")
	}
	if !regexp.MustCompile(`(?m)^  xskgate_allow4 +LPMTrie +1 +\d+$`).MatchString(s) {
		t.Errorf("the first line's IPv4 allowlist map should hold the one allowlisted prefix")
	}
	if !regexp.MustCompile(`(?m)^  flows +\d+ +\d+ +TCP flows`).MatchString(s) {
		t.Errorf("the flow table row is missing")
	}
}

// wantChecksums is who completes partial checksums on this kernel.
func wantChecksums() string {
	if xsk.ProbeTxMetadata() != nil {
		return "software (kernel refuses AF_XDP TX metadata"
	}
	return "kernel at TX (AF_XDP TX metadata, copy mode)"
}
