package xdpprog

import (
	"encoding/binary"
	"testing"
)

func encodeMeta(m Meta) []byte {
	b := make([]byte, MetaSize)
	binary.LittleEndian.PutUint32(b[metaOffMagic:], m.Magic)
	binary.LittleEndian.PutUint32(b[metaOffLen:], m.Len)
	binary.LittleEndian.PutUint32(b[metaOffSeq:], m.Seq)
	binary.LittleEndian.PutUint32(b[metaOffQueue:], m.Queue)
	return b
}

func TestParseMeta(t *testing.T) {
	tests := []struct {
		name  string
		in    []byte
		want  Meta
		valid bool
	}{
		{
			name:  "record",
			in:    encodeMeta(Meta{Magic: MetaMagic, Len: 60, Seq: 7, Queue: 1}),
			want:  Meta{Magic: MetaMagic, Len: 60, Seq: 7, Queue: 1},
			valid: true,
		},
		{
			// The exact bytes the program stores on little-endian hosts.
			name:  "wire bytes",
			in:    []byte{0x01, 0x4b, 0x53, 0x58, 0x40, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 3, 0, 0, 0},
			want:  Meta{Magic: MetaMagic, Len: 64, Seq: 0xffffffff, Queue: 3},
			valid: true,
		},
		{
			name: "no record",
			in:   make([]byte, MetaSize),
			want: Meta{},
		},
		{
			name: "other version",
			in:   encodeMeta(Meta{Magic: MetaMagic + 1, Len: 1}),
			want: Meta{Magic: MetaMagic + 1, Len: 1},
		},
		{
			name:  "longer slice reads the first MetaSize bytes",
			in:    append(encodeMeta(Meta{Magic: MetaMagic, Seq: 2}), 0xaa, 0xbb),
			want:  Meta{Magic: MetaMagic, Seq: 2},
			valid: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseMeta(tt.in)
			if got != tt.want {
				t.Errorf("ParseMeta = %+v, want %+v", got, tt.want)
			}
			if got.Valid() != tt.valid {
				t.Errorf("Valid = %v, want %v", got.Valid(), tt.valid)
			}
		})
	}
}

func TestParseMetaShortPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("ParseMeta of a short slice did not panic")
		}
	}()
	ParseMeta(make([]byte, MetaSize-1))
}

func TestParseMetaNoAlloc(t *testing.T) {
	b := encodeMeta(Meta{Magic: MetaMagic, Len: 60, Seq: 1})
	var sink Meta
	if n := testing.AllocsPerRun(1000, func() { sink = ParseMeta(b) }); n != 0 {
		t.Fatalf("ParseMeta allocates %v times per call, want 0", n)
	}
	_ = sink
}

func BenchmarkParseMeta(b *testing.B) {
	buf := encodeMeta(Meta{Magic: MetaMagic, Len: 60, Seq: 1})
	b.ReportAllocs()
	var n uint32
	for b.Loop() {
		m := ParseMeta(buf)
		if m.Valid() {
			n += m.Seq
		}
	}
	_ = n
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    Mode
		wantErr bool
	}{
		{"native", ModeNative, false},
		{"driver", ModeNative, false},
		{"drv", ModeNative, false},
		{" Generic ", ModeGeneric, false},
		{"skb", ModeGeneric, false},
		{"offload", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMode(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseMode(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Fatalf("ParseMode(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
	for _, m := range []Mode{ModeNative, ModeGeneric} {
		if got, err := ParseMode(m.String()); err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v; want round trip", m.String(), got, err)
		}
	}
	if s := Mode(9).String(); s != "Mode(9)" {
		t.Errorf("Mode(9).String() = %q", s)
	}
}
