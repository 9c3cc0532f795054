package pcapng

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"
)

const (
	// SnapLen is the snapshot length of every interface in the file.
	SnapLen = 65535
	// maxComment is the longest comment that fits a pcapng option (its
	// length is a u16; the writer pads to 4 bytes).
	maxComment = 65532
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("pcapng writer closed")

// Record is one captured frame.
type Record struct {
	// Time is when the frame was seen; the zero Time means now.
	Time time.Time
	// Iface is the interface name ("outer", "inner"); it selects the
	// pcapng interface and must not be empty.
	Iface string
	// Queue is the AF_XDP queue the frame was received on (epb_queue).
	Queue uint32
	// Data is the frame from the Ethernet header on. It is copied into the
	// file before Write returns, so it may point into UMEM.
	Data []byte
	// OrigLen is the frame's length on the wire if Data holds only part of
	// it; 0 means len(Data).
	OrigLen int
	// Comment is free text, e.g. "violation=rx_not_in_fill addr=0x1234
	// desc_len=60 xdp_len=64"; it is written as an opt_comment if not empty.
	Comment string
	// PacketID is written verbatim as epb_packetid, for correlation with
	// flight recorder events (for example the UMEM address or a sequence).
	PacketID uint64
	// XDPVerdict, if not nil, is the XDP action (XDP_PASS, XDP_REDIRECT,
	// ...) written as an epb_verdict of type Linux_eBPF_XDP.
	XDPVerdict *uint32
}

// Writer writes Records to one pcapng file. It is safe for concurrent use.
type Writer struct {
	path string

	mu     sync.Mutex
	f      *os.File
	out    countingWriter   // f, counting what reaches it
	ng     *pcapgo.NgWriter // nil until the first Write
	ifaces map[string]int   // iface name -> pcapng interface id
	n      uint64           // records written
	closed bool
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	f *os.File
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.f.Write(p)
	c.n += int64(n)
	return n, err
}

// Create creates dir (mode 0700) if it does not exist and a new file name in
// it with O_EXCL and mode 0600. name must be a plain file name.
func Create(dir, name string) (*Writer, error) {
	if name == "" || name == "." || name == ".." || filepath.Base(name) != name {
		return nil, fmt.Errorf("create pcapng: invalid file name %q", name)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pcapng directory: %w", err)
	}
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create pcapng: %w", err)
	}
	return &Writer{path: path, f: f, out: countingWriter{f: f}, ifaces: make(map[string]int)}, nil
}

// Path returns the file's path.
func (w *Writer) Path() string { return w.path }

// Size returns the bytes written to the file so far (every Write is
// flushed, so this is the file's size).
func (w *Writer) Size() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.n
}

// Written returns the number of records written so far.
func (w *Writer) Written() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

func newInterface(iface string) pcapgo.NgInterface {
	return pcapgo.NgInterface{
		Name:        iface,
		Description: "xskgate AF_XDP interface " + iface,
		OS:          runtime.GOOS,
		LinkType:    layers.LinkTypeEthernet,
		SnapLength:  SnapLen,
		// pcapgo always writes nanosecond timestamps.
		TimestampResolution: 9,
	}
}

func sectionInfo() pcapgo.NgWriterOptions {
	return pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
		Hardware:    runtime.GOARCH,
		OS:          osName(),
		Application: "xskgate",
	}}
}

// osName is the kernel's name and release, e.g. "Linux 6.18.44".
var osName = sync.OnceValue(func() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return runtime.GOOS
	}
	return unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:])
})

// Write appends r to the file and flushes it to the kernel.
func (w *Writer) Write(r Record) error {
	if r.Iface == "" {
		return errors.New("write pcapng record: empty interface name")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	id, err := w.iface(r.Iface)
	if err != nil {
		return err
	}

	data := r.Data
	if len(data) > SnapLen {
		data = data[:SnapLen]
	}
	origLen := max(r.OrigLen, len(r.Data))
	ts := r.Time
	if ts.IsZero() {
		ts = time.Now()
	}
	ci := gopacket.CaptureInfo{
		Timestamp:      ts,
		CaptureLength:  len(data),
		Length:         origLen,
		InterfaceIndex: id,
	}
	queue, pid := r.Queue, r.PacketID
	opts := pcapgo.NgPacketOptions{Queue: &queue, PacketID: &pid}
	if r.Comment != "" {
		opts.Comments = []string{truncate(r.Comment, maxComment)}
	}
	if r.XDPVerdict != nil {
		// A Linux_eBPF_XDP verdict is a u64 in the file's byte order, and
		// pcapgo writes little-endian files.
		v := binary.LittleEndian.AppendUint64(nil, uint64(*r.XDPVerdict))
		opts.Verdicts = []pcapgo.NgEpbVerdict{{Type: pcapgo.NgEpbVerdictTypeLinuxeBPFXDP, Data: v}}
	}
	if err := w.ng.WritePacketWithOptions(ci, data, opts); err != nil {
		return fmt.Errorf("write pcapng record: %w", err)
	}
	if err := w.ng.Flush(); err != nil {
		return fmt.Errorf("flush pcapng: %w", err)
	}
	w.n++
	return nil
}

// iface returns the pcapng interface id of name, writing the section header
// or an interface description block first if needed. w.mu must be held.
func (w *Writer) iface(name string) (int, error) {
	if id, ok := w.ifaces[name]; ok {
		return id, nil
	}
	var id int
	if w.ng == nil {
		// pcapgo writes the section header together with the first
		// interface, which is why both wait for the first frame.
		ng, err := pcapgo.NewNgWriterInterface(&w.out, newInterface(name), sectionInfo())
		if err != nil {
			return 0, fmt.Errorf("write pcapng section header: %w", err)
		}
		w.ng = ng
	} else {
		var err error
		if id, err = w.ng.AddInterface(newInterface(name)); err != nil {
			return 0, fmt.Errorf("add pcapng interface %s: %w", name, err)
		}
	}
	w.ifaces[name] = id
	return id, nil
}

// truncate shortens s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Close flushes, syncs and closes the file; if nothing was written the empty
// file is removed. Closing twice returns nil.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	if w.ng == nil {
		cerr := w.f.Close()
		if err := os.Remove(w.path); err != nil {
			return errors.Join(cerr, fmt.Errorf("remove empty pcapng: %w", err))
		}
		return cerr
	}
	var errs []error
	if err := w.ng.Flush(); err != nil {
		errs = append(errs, fmt.Errorf("flush pcapng: %w", err))
	}
	if err := w.f.Sync(); err != nil {
		errs = append(errs, fmt.Errorf("sync pcapng: %w", err))
	}
	if err := w.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close pcapng: %w", err))
	}
	return errors.Join(errs...)
}
