package pcapng

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// frame returns a recognisable Ethernet frame of n bytes.
func frame(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i)
	}
	if n >= 14 {
		binary.BigEndian.PutUint16(b[12:], uint16(layers.EthernetTypeIPv4))
	}
	return b
}

func u32(v uint32) *uint32 { return &v }

type readBack struct {
	data    []byte
	origLen int
	iface   string
	ts      time.Time
	opts    pcapgo.NgPacketOptions
}

func readAll(t *testing.T, path string) []readBack {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("NewNgReader: %v", err)
	}
	var out []readBack
	for {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("ReadPacketDataWithOptions: %v", err)
		}
		intf, err := r.Interface(ci.InterfaceIndex)
		if err != nil {
			t.Fatal(err)
		}
		if intf.LinkType != layers.LinkTypeEthernet || intf.SnapLength != SnapLen {
			t.Errorf("interface %s: link type %v snaplen %d", intf.Name, intf.LinkType, intf.SnapLength)
		}
		out = append(out, readBack{data, ci.Length, intf.Name, ci.Timestamp, opts})
	}
	if got := r.SectionInfo().Application; got != "xskgate" {
		t.Errorf("section application = %q", got)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "captures")
	w, err := Create(dir, "violations.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	recs := []Record{
		{Time: t0, Iface: "outer", Queue: 0, Data: frame(60, 1), PacketID: 0x1234,
			Comment: "violation=rx_not_in_fill addr=0x1234 desc_len=60 xdp_len=64", XDPVerdict: u32(4)},
		{Time: t0.Add(time.Microsecond), Iface: "inner", Queue: 3, Data: frame(64, 2), PacketID: 7,
			Comment: "violation=tx_not_owned addr=0x2000"},
		{Time: t0.Add(2 * time.Microsecond), Iface: "outer", Queue: 1, Data: frame(1514, 3)},
		{Time: t0.Add(3 * time.Microsecond), Iface: "inner", Queue: 0, Data: frame(SnapLen+100, 4),
			Comment: "jumbo ü " + strings.Repeat("x", 70000)},
		{Time: t0.Add(4 * time.Microsecond), Iface: "outer", Data: frame(60, 5), OrigLen: 1500, Comment: "head only"},
	}
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	if w.Written() != uint64(len(recs)) {
		t.Errorf("Written() = %d", w.Written())
	}
	// Every Write is flushed: the file is readable before Close.
	if got := readAll(t, w.Path()); len(got) != len(recs) {
		t.Errorf("before Close: read %d records, want %d", len(got), len(recs))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := w.Write(recs[0]); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close: %v, want ErrClosed", err)
	}

	got := readAll(t, w.Path())
	if len(got) != len(recs) {
		t.Fatalf("read %d records, want %d", len(got), len(recs))
	}
	for i, r := range recs {
		g := got[i]
		wantData := r.Data[:min(len(r.Data), SnapLen)]
		if !bytes.Equal(g.data, wantData) {
			t.Errorf("record %d: data differs (%d bytes, want %d)", i, len(g.data), len(wantData))
		}
		if want := max(r.OrigLen, len(r.Data)); g.origLen != want {
			t.Errorf("record %d: length %d, want %d", i, g.origLen, want)
		}
		if g.iface != r.Iface {
			t.Errorf("record %d: interface %q, want %q", i, g.iface, r.Iface)
		}
		if !g.ts.Equal(r.Time) {
			t.Errorf("record %d: time %v, want %v", i, g.ts, r.Time)
		}
		if g.opts.Queue == nil || *g.opts.Queue != r.Queue {
			t.Errorf("record %d: queue %v, want %d", i, g.opts.Queue, r.Queue)
		}
		if g.opts.PacketID == nil || *g.opts.PacketID != r.PacketID {
			t.Errorf("record %d: packet id %v, want %d", i, g.opts.PacketID, r.PacketID)
		}
		switch {
		case r.Comment == "" && len(g.opts.Comments) != 0:
			t.Errorf("record %d: unexpected comments %q", i, g.opts.Comments)
		case r.Comment != "" && (len(g.opts.Comments) != 1 || !strings.HasPrefix(r.Comment, g.opts.Comments[0])):
			t.Errorf("record %d: comments %.80q, want %.80q", i, g.opts.Comments, r.Comment)
		case len(r.Comment) <= maxComment && r.Comment != "" && g.opts.Comments[0] != r.Comment:
			t.Errorf("record %d: comment %q, want %q", i, g.opts.Comments[0], r.Comment)
		}
		if r.XDPVerdict != nil {
			if len(g.opts.Verdicts) != 1 || g.opts.Verdicts[0].Type != pcapgo.NgEpbVerdictTypeLinuxeBPFXDP ||
				binary.LittleEndian.Uint64(g.opts.Verdicts[0].Data) != uint64(*r.XDPVerdict) {
				t.Errorf("record %d: verdicts %+v, want XDP %d", i, g.opts.Verdicts, *r.XDPVerdict)
			}
		} else if len(g.opts.Verdicts) != 0 {
			t.Errorf("record %d: unexpected verdicts %+v", i, g.opts.Verdicts)
		}
	}

	for _, p := range []string{w.Path(), dir} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}

	t.Run("tshark", func(t *testing.T) {
		tshark, err := exec.LookPath("tshark")
		if err != nil {
			t.Skip("tshark not installed; pcapgo round trip above covers the format")
		}
		out, err := exec.Command(tshark, "-r", w.Path(), "-T", "fields", "-e", "frame.comment").CombinedOutput()
		if err != nil {
			t.Fatalf("tshark: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "violation=rx_not_in_fill addr=0x1234") {
			t.Errorf("tshark output lacks the comment:\n%.2000s", out)
		}
	})
}

func TestCreate(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		file    string
		wantErr bool
	}{
		{"plain", "a.pcapng", false},
		{"exists", "a.pcapng", true},
		{"empty", "", true},
		{"dotdot", "..", true},
		{"path", "sub/a.pcapng", true},
	}
	var keep []*Writer
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := Create(dir, tt.file)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Create(%q) error = %v, wantErr %t", tt.file, err, tt.wantErr)
			}
			if w != nil {
				keep = append(keep, w)
			}
		})
	}
	for _, w := range keep {
		if err := w.Write(Record{Iface: "outer", Data: frame(60, 0)}); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWriteRejectsEmptyIface(t *testing.T) {
	w, err := Create(t.TempDir(), "x.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Write(Record{Data: frame(60, 0)}); err == nil {
		t.Error("Write with empty Iface succeeded")
	}
}

func TestCloseWithoutRecordsRemovesFile(t *testing.T) {
	w, err := Create(t.TempDir(), "empty.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(w.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("empty capture left behind (stat: %v)", err)
	}
}

func TestConcurrentWrites(t *testing.T) {
	w, err := Create(t.TempDir(), "c.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	const perG = 50
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			iface := []string{"outer", "inner"}[g%2]
			for i := range perG {
				err := w.Write(Record{Iface: iface, Queue: uint32(g), Data: frame(60+i, byte(g)),
					PacketID: uint64(g<<16 | i), Comment: fmt.Sprintf("g=%d i=%d", g, i)})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, w.Path())
	if len(got) != 4*perG {
		t.Fatalf("read %d records, want %d", len(got), 4*perG)
	}
	next := map[uint32]int{}
	for _, g := range got {
		q := *g.opts.Queue
		i := next[q]
		if want := fmt.Sprintf("g=%d i=%d", q, i); g.opts.Comments[0] != want || !bytes.Equal(g.data, frame(60+i, byte(q))) {
			t.Fatalf("queue %d: got comment %q, want %q", q, g.opts.Comments[0], want)
		}
		next[q]++
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"abc", 5, "abc"},
		{"abc", 2, "ab"},
		{"aü", 2, "a"}, // ü is two bytes
		{"aü", 3, "aü"},
		{"ü", 1, ""},
	}
	for _, tt := range tests {
		if got := truncate(tt.s, tt.n); got != tt.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}

func BenchmarkWrite(b *testing.B) {
	w, err := Create(b.TempDir(), "bench.pcapng")
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	r := Record{Iface: "outer", Queue: 1, Data: frame(64, 0), PacketID: 1,
		Comment: "violation=rx_not_in_fill addr=0x1234 desc_len=60 xdp_len=64"}
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Write(r); err != nil {
			b.Fatal(err)
		}
	}
}
