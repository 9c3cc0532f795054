package pcapng

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCostIsExact: Cost predicts what each Write adds to the file, for the
// first record (section header and interface), a new interface, a known
// one, odd lengths, an oversized frame, long comments and a verdict. A
// caller keeping a byte budget relies on it never being short.
func TestCostIsExact(t *testing.T) {
	w, err := Create(t.TempDir(), "cost.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	recs := []Record{
		{Iface: "outer", Data: frame(60, 1), Comment: "violation=out_of_order"},
		{Iface: "outer", Data: frame(61, 2)},
		{Iface: "inner-with-a-longer-name", Data: frame(1514, 3), Comment: "c", XDPVerdict: u32(4)},
		{Iface: "inner-with-a-longer-name", Data: frame(SnapLen+100, 4), Comment: strings.Repeat("é", 40000)},
		{Iface: "outer", Data: frame(63, 5), Comment: "abc", PacketID: 7, Queue: 3},
	}
	for i, r := range recs {
		before := w.Size()
		cost := w.Cost(r)
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
		if got := w.Size() - before; got != cost {
			t.Errorf("record %d: Cost %d, Write added %d bytes", i, cost, got)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(filepath.Dir(w.Path()), "cost.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != w.Size() {
		t.Fatalf("file has %d bytes, Size said %d", fi.Size(), w.Size())
	}
	if got := readAll(t, w.Path()); len(got) != len(recs) {
		t.Fatalf("read back %d records, wrote %d", len(got), len(recs))
	}
}
