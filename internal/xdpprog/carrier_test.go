package xdpprog

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// kernel plays a kernel that allows the helpers in allowed.
func kernel(allowed ...asm.BuiltinFunc) helperProbe {
	return func(fn asm.BuiltinFunc) error {
		for _, a := range allowed {
			if a == fn {
				return nil
			}
		}
		return ebpf.ErrNotSupported
	}
}

func TestChooseCarrier(t *testing.T) {
	meta, head := asm.FnXdpAdjustMeta, asm.FnXdpAdjustHead
	tests := []struct {
		name    string
		want    Carrier
		kernel  helperProbe
		got     Carrier
		errText string
	}{
		{"auto, both helpers", CarrierAuto, kernel(meta, head), CarrierMeta, ""},
		{"auto, no adjust_meta (Linux 6.18 fc-v1294)", CarrierAuto, kernel(head), CarrierHead, ""},
		{"auto, neither", CarrierAuto, kernel(), CarrierNone, ""},
		{"head asked, allowed", CarrierHead, kernel(meta, head), CarrierHead, ""},
		{"meta asked, refused", CarrierMeta, kernel(head), 0, "refuses bpf_xdp_adjust_meta"},
		{"head asked, refused", CarrierHead, kernel(meta), 0, "refuses bpf_xdp_adjust_head"},
		{"none asked", CarrierNone, kernel(), CarrierNone, ""},
		{"probe fails", CarrierAuto, func(asm.BuiltinFunc) error { return errors.New("EPERM") }, 0, "probing the bpf_xdp_adjust_meta helper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why, err := chooseCarrier(tt.want, tt.kernel)
			if tt.errText != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errText) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("err = %v, want one line containing %q", err, tt.errText)
				}
				return
			}
			if err != nil || got != tt.got || why == "" {
				t.Fatalf("chooseCarrier(%s) = %s, %q, %v; want %s with a reason", tt.want, got, why, err, tt.got)
			}
		})
	}
}

func TestParseCarrier(t *testing.T) {
	for _, c := range []Carrier{CarrierMeta, CarrierHead, CarrierNone, CarrierAuto} {
		got, err := ParseCarrier(c.String())
		if err != nil || got != c {
			t.Errorf("ParseCarrier(%q) = %v, %v", c, got, err)
		}
	}
	if _, err := ParseCarrier("xdp"); err == nil {
		t.Error("ParseCarrier(xdp) succeeded")
	}
}

func putRecord(b []byte, magic uint32, m Meta) {
	binary.LittleEndian.PutUint32(b[0:], magic)
	binary.LittleEndian.PutUint32(b[4:], m.Len)
	binary.LittleEndian.PutUint32(b[8:], m.Seq)
	binary.LittleEndian.PutUint32(b[12:], m.Queue)
}

// TestLocate covers what user space meets per carrier: the record in the
// metadata area, in front of the frame (also as the meta carrier's run-time
// fallback), none, and a cleared metadata magic that must not be read.
func TestLocate(t *testing.T) {
	const addr, off = 256, 256
	rec := Meta{Len: 60, Seq: 9, Queue: 1}
	withMeta := func() []byte {
		b := make([]byte, 4096)
		putRecord(b[addr-MetaSize:], MetaMagic, rec)
		return b
	}
	withHead := func() []byte {
		b := make([]byte, 4096)
		putRecord(b[addr:], HeadMagic, rec)
		return b
	}
	cleared := withMeta()
	ClearMeta(cleared, addr)
	putRecord(cleared[addr:], HeadMagic, rec)
	tests := []struct {
		name  string
		c     Carrier
		area  []byte
		off   uint64
		ok    bool
		strip uint32
	}{
		{"meta in metadata area", CarrierMeta, withMeta(), off, true, 0},
		{"meta carrier, driver refused: head fallback", CarrierMeta, withHead(), off, true, MetaSize},
		{"meta carrier, stale magic cleared before FILL", CarrierMeta, cleared, off, true, MetaSize},
		{"meta carrier, no room before the frame", CarrierMeta, withMeta(), MetaSize - 1, false, 0},
		{"meta carrier, nothing", CarrierMeta, make([]byte, 4096), off, false, 0},
		{"head", CarrierHead, withHead(), off, true, MetaSize},
		{"head carrier ignores the metadata area", CarrierHead, withMeta(), off, false, 0},
		{"none", CarrierNone, withHead(), off, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, strip, ok := tt.c.Locate(tt.area, addr, 100, tt.off)
			if ok != tt.ok || strip != tt.strip || (ok && (m.Len != rec.Len || m.Seq != rec.Seq || m.Queue != rec.Queue)) {
				t.Fatalf("Locate = %+v, %d, %v; want ok %v strip %d", m, strip, ok, tt.ok, tt.strip)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() { CarrierMeta.Locate(cleared, addr, 100, off) }); n != 0 {
		t.Fatalf("Locate allocates %v times", n)
	}
}
