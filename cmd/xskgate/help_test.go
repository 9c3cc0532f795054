package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestHelpShowsRealDefaults: every command's -h exits 0 and shows the
// defaults a user gets, never an internal sentinel (run once showed
// -metrics (default "\x00"), -queues and -tx-budget (default -1)).
func TestHelpShowsRealDefaults(t *testing.T) {
	for _, c := range commands {
		args := []string{c.name, "-h"}
		switch c.name {
		case "config":
			continue // takes no flags: `config check FILE`
		case "lab":
			args = []string{"lab", "up", "-h"}
		}
		t.Run(c.name, func(t *testing.T) {
			out, err := exec.Command(bin, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %v\n%s", args, err, out)
			}
			s := string(out)
			for _, bad := range []string{`\x00`, "\x00", "(default -1)"} {
				if strings.Contains(s, bad) {
					t.Errorf("%v shows the sentinel %q:\n%s", args, bad, s)
				}
			}
		})
	}
	out, _ := exec.Command(bin, "run", "-h").CombinedOutput()
	for _, want := range []string{
		`-metrics string` + "\n" + `    	Prometheus listen address ("" disables) (default "127.0.0.1:9470")`,
		`(default "/run/xskgate/xskgate.sock")`, `(default "native")`, "(default 8192)", "(default 2048)",
		"0 (the default) = all", "0 (the default) = the kernel's 32",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("run -h lacks %q:\n%s", want, out)
		}
	}
}

// TestRunFlagsOverride: a flag overrides the config file only when given
// (even with the built-in default as its value); the help text's defaults
// never leak over the file's values.
func TestRunFlagsOverride(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("metrics:\n  listen: \"127.0.0.1:9999\"\nqueues: 2\nrings:\n  tx: 4096\n  tx_budget: 64\nengine:\n  batch: 32\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args                       []string
		listen                     string
		queues, batch, budget, txs int
	}{
		{[]string{"--config", file}, "127.0.0.1:9999", 2, 32, 64, 4096},
		{[]string{"--config", file, "--metrics", "127.0.0.1:9470", "--queues", "0", "--tx-budget", "0"}, "127.0.0.1:9470", 0, 32, 0, 4096},
		{[]string{"--config", file, "--metrics", "", "--batch", "64"}, "", 2, 64, 64, 4096},
		{nil, "127.0.0.1:9470", 0, 64, 0, 2048},
	} {
		f := newRunFlags()
		f.fs.SetOutput(io.Discard)
		if err := f.fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.load()
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if cfg.Metrics.Listen != tc.listen || cfg.Queues != tc.queues || cfg.Engine.Batch != tc.batch ||
			int(cfg.Rings.TxBudget) != tc.budget || int(cfg.Rings.TX) != tc.txs {
			t.Errorf("%q: listen %q queues %d batch %d tx_budget %d tx %d; want %q %d %d %d %d", tc.args,
				cfg.Metrics.Listen, cfg.Queues, cfg.Engine.Batch, cfg.Rings.TxBudget, cfg.Rings.TX,
				tc.listen, tc.queues, tc.batch, tc.budget, tc.txs)
		}
	}
}
