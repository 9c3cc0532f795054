package metrics

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xskgate/xskgate/internal/integrity"
	"github.com/xskgate/xskgate/internal/xsk"
)

// TestIntegrityEvidenceMetrics: the evidence limits are exported: the
// bytes already in the dump directory, the cap, and a series per class and
// reason for frames not captured.
func TestIntegrityEvidenceMetrics(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "flightrec-earlier.txt"), make([]byte, 1234), 0o600); err != nil {
		t.Fatal(err)
	}
	const frames = 64
	u, err := xsk.UmemOn(make([]byte, frames*4096), xsk.UmemConfig{FrameSize: 4096, NumFrames: frames})
	if err != nil {
		t.Fatal(err)
	}
	cfg := integrity.DefaultConfig()
	cfg.DumpDir, cfg.MaxBytes = dir, 1<<20
	c, err := integrity.New(u, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewIntegrityCollector(c))
	m := gather(t, reg)
	for key, want := range map[string]float64{
		"xskgate_integrity_evidence_bytes{}":                                           1234,
		"xskgate_integrity_evidence_max_bytes{}":                                       1 << 20,
		"xskgate_integrity_frames_not_captured_total{class=out_of_order,reason=rate}":  0,
		"xskgate_integrity_frames_not_captured_total{class=out_of_order,reason=cap}":   0,
		"xskgate_integrity_evidence_not_written_total{kind=flightrec,reason=interval}": 0,
		"xskgate_integrity_evidence_not_written_total{kind=flightrec,reason=cap}":      0,
		"xskgate_integrity_evidence_not_written_total{kind=ftrace,reason=cap}":         0,
	} {
		got, ok := m[key]
		if !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
}
