package flightrec

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

type taggedEvent struct {
	Event
	rec int
}

// Dump snapshots recs and writes their events to w merged in time order, one
// line per event, after a '#'-prefixed header naming the reason and each
// recorder. Events with equal times keep recorder order (the order of recs),
// then recording order. Each line holds: seconds since the first dumped
// event, absolute CLOCK_MONOTONIC ns, CPU, thread id, iface/queue, op,
// address (hex, with chunk base and offset), length, batch and aux.
func Dump(w io.Writer, reason string, recs ...*Recorder) error {
	var (
		evs  []taggedEvent
		snap []Event
	)
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "# xskgate flight recorder dump\n# reason: %s\n# wall: %s\n# clock: CLOCK_MONOTONIC ns (calibration error <= %v)\n",
		oneLine(reason), time.Now().UTC().Format(time.RFC3339Nano), CalibrationError())
	for i, r := range recs {
		if r == nil {
			continue
		}
		snap = r.Snapshot(snap[:0])
		cpu, tid := r.Thread()
		size, unaligned := r.chunkSize()
		recorded := r.Recorded()
		fmt.Fprintf(bw, "# recorder %s/%d cpu=%d tid=%d size=%d recorded=%d dumped=%d chunk=%d unaligned=%t\n",
			r.iface, r.queue, cpu, tid, r.Size(), recorded, len(snap), size, unaligned)
		for _, e := range snap {
			evs = append(evs, taggedEvent{e, i})
		}
	}
	slices.SortStableFunc(evs, func(a, b taggedEvent) int { return cmp.Compare(a.Time, b.Time) })
	fmt.Fprintf(bw, "# events: %d\n", len(evs))
	if len(evs) > 0 {
		fmt.Fprintf(bw, "# %14s %19s %4s %7s %-10s %-11s %-18s %-24s %5s %10s %s\n",
			"rel_s", "mono_ns", "cpu", "tid", "if/q", "op", "addr", "chunk+off", "len", "batch", "aux")
	}
	var t0 int64
	if len(evs) > 0 {
		t0 = evs[0].Time
	}
	for _, e := range evs {
		r := recs[e.rec]
		cpu, tid := r.Thread()
		rel := e.Time - t0
		fmt.Fprintf(bw, "%6d.%09d %19d %4d %7d %-10s %-11s 0x%016x %-24s %5d %10d %s\n",
			rel/1e9, rel%1e9, e.Time, cpu, tid,
			fmt.Sprintf("%s/%d", r.iface, r.queue), e.Op, e.Addr, r.chunkOf(e.Addr),
			e.Len, e.Batch, formatAux(e.Op, e.Aux))
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write flight recorder dump: %w", err)
	}
	return nil
}

// chunkOf renders addr as "chunk+offset" for the recorder's UMEM layout.
func (r *Recorder) chunkOf(addr uint64) string {
	size, unaligned := r.chunkSize()
	eff := addr
	if unaligned {
		eff = addr&unalignedMask + addr>>unalignedShift
	}
	if size == 0 {
		return "-"
	}
	return fmt.Sprintf("%#x+%#x", eff/size*size, eff%size)
}

// DumpFile writes Dump's output to a new file in dir (created 0700 if
// missing) and returns its path. The file is created with O_EXCL and mode
// 0600, named after the current UTC time and the reason, and synced before
// DumpFile returns, since a violation may be followed by the process dying.
// On a write error the partial file is kept and its path returned.
func DumpFile(dir, reason string, recs ...*Recorder) (path string, err error) {
	var b bytes.Buffer
	if err := Dump(&b, reason, recs...); err != nil {
		return "", err
	}
	return WriteDumpFile(dir, reason, b.Bytes())
}

// WriteDumpFile writes data, a Dump rendered to memory, to a new file in
// dir named and created as DumpFile does. Rendering first lets a caller
// with a byte budget know a dump's size before a byte of it reaches the
// disk.
func WriteDumpFile(dir, reason string, data []byte) (path string, err error) {
	f, err := createExclusive(dir, "flightrec", reason, ".txt")
	if err != nil {
		return "", err
	}
	path = f.Name()
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return path, fmt.Errorf("dump flight recorder to %s: %w", path, err)
	}
	return path, nil
}

// createExclusive creates dir (0700) if needed and a new 0600 file in it
// named prefix-<UTC time>-<sanitised tag><ext>, adding a counter if that name
// is taken: forensic files are never overwritten.
func createExclusive(dir, prefix, tag, ext string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create dump directory: %w", err)
	}
	name := prefix + "-" + time.Now().UTC().Format("20060102T150405.000000000Z")
	if t := sanitize(tag); t != "" {
		name += "-" + t
	}
	for i := 0; ; i++ {
		p := filepath.Join(dir, name+ext)
		if i > 0 {
			p = filepath.Join(dir, fmt.Sprintf("%s.%d%s", name, i, ext))
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrExist) || i == 100 {
			return nil, fmt.Errorf("create dump file: %w", err)
		}
	}
}

// sanitize keeps a short, shell- and path-safe version of s for file names.
func sanitize(s string) string {
	var b strings.Builder
	for _, c := range s {
		if b.Len() >= 48 {
			break
		}
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteRune(c)
		case c == ' ', c == '=', c == '.', c == ':':
			b.WriteByte('_')
		}
	}
	return b.String()
}

func oneLine(s string) string {
	return strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(s)
}
