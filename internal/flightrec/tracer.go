package flightrec

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// tracefsRoots are tried in order; the debugfs path is an automount of
// tracefs on kernels and distributions that do not mount it at
// /sys/kernel/tracing.
var tracefsRoots = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

const (
	// instancePrefix namespaces our tracefs instances.
	instancePrefix = "xskgate-"
	// freezeToken in a marker stops the instance's buffer in the kernel. It
	// is longer than the bare word so an interface or op name cannot trip it.
	freezeToken = "XSKGATE_FREEZE"
	// freezeTrigger is installed on the instance's ftrace:print event: the
	// kernel turns the buffer off right after recording the matching marker,
	// before anything else can overwrite what led up to it.
	freezeTrigger = `traceoff if buf ~ "*` + freezeToken + `*"`
)

// Tracer mirrors events into a private ftrace instance (tracefs
// instances/xskgate-NAME) that also records the kernel's xdp:* tracepoints,
// using trace_clock "mono" so its timestamps are comparable with [Now].
// It never touches the global trace buffer. It is safe for concurrent use.
type Tracer struct {
	dir string

	mu         sync.Mutex
	marker     *os.File
	buf        []byte
	frozen     bool
	closed     bool
	marks      uint64
	errs       uint64
	suppressed uint64
	lastErr    error
}

// TracerStats counts what a Tracer did with Mark calls.
type TracerStats struct {
	Marks      uint64 // markers written
	Errors     uint64 // marker writes that failed
	Suppressed uint64 // Mark calls after Freeze or Close, not written
	LastErr    error  // most recent write error, if any
}

// OpenTracer creates the tracefs instance "xskgate-<name>", sets its
// trace_clock to mono, enables the xdp:* events in it, installs the freeze
// trigger, turns tracing on and keeps trace_marker open. A stale instance of
// the same name (left by a crashed run) is removed first if nobody holds it
// open. It needs tracefs mounted and root (CAP_SYS_ADMIN).
func OpenTracer(name string) (*Tracer, error) {
	if name == "" || strings.ContainsFunc(name, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.')
	}) {
		return nil, fmt.Errorf("open tracer: invalid instance name %q", name)
	}
	root, err := findTracefs()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(root, "instances", instancePrefix+name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("create tracefs instance: %w%s", err, privHint(err))
		}
		if err := os.Remove(dir); err != nil {
			return nil, fmt.Errorf("remove stale tracefs instance (still in use?): %w", err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create tracefs instance: %w", err)
		}
	}
	t := &Tracer{dir: dir, buf: make([]byte, 0, 256)}
	if err := t.setup(); err != nil {
		return nil, errors.Join(err, t.Close())
	}
	return t, nil
}

func (t *Tracer) setup() error {
	if err := t.writeCtl("trace_clock", "mono"); err != nil {
		return err
	}
	// The xdp tracepoints (xdp_redirect_err, xdp_exception, ...) are the
	// nearest the kernel gets to AF_XDP events. A kernel without them still
	// gives us a usable marker buffer.
	if err := t.writeCtl("events/xdp/enable", "1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := t.writeCtl("events/ftrace/print/trigger", freezeTrigger); err != nil {
		return err
	}
	if err := t.writeCtl("tracing_on", "1"); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(t.dir, "trace_marker"), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open trace_marker: %w", err)
	}
	t.marker = f
	return nil
}

// findTracefs returns the first tracefs mount that supports instances.
func findTracefs() (string, error) {
	for _, root := range tracefsRoots {
		var st unix.Statfs_t
		if err := unix.Statfs(root, &st); err != nil || st.Type != unix.TRACEFS_MAGIC {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, "instances")); err == nil {
			return root, nil
		}
	}
	return "", fmt.Errorf("tracefs not mounted at %s (mount -t tracefs nodev %s)",
		strings.Join(tracefsRoots, " or "), tracefsRoots[0])
}

func privHint(err error) string {
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EPERM) {
		return " (needs root/CAP_SYS_ADMIN)"
	}
	return ""
}

// writeCtl writes val to a control file of the instance. It opens without
// O_TRUNC on purpose: on tracefs, truncating "trigger" drops every trigger
// and truncating "trace" clears the buffer.
func (t *Tracer) writeCtl(name, val string) error {
	f, err := os.OpenFile(filepath.Join(t.dir, name), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w%s", name, err, privHint(err))
	}
	_, werr := f.WriteString(val + "\n")
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("write %q to %s: %w", val, name, err)
	}
	return nil
}

// Dir returns the tracefs instance directory.
func (t *Tracer) Dir() string { return t.dir }

// Mark writes one marker line describing ev on iface/queue, with ev.Time so
// the line can be matched against the flight recorder dump. It does not
// allocate once the format buffer has grown to the longest line. Failures are
// counted (see Stats), never returned: tracing must not disturb forwarding.
func (t *Tracer) Mark(ev Event, iface string, queue int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.frozen || t.closed {
		t.suppressed++
		return
	}
	b := append(t.buf[:0], "xskgate "...)
	b = append(b, iface...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(queue), 10)
	b = append(b, ' ')
	b = appendOp(b, ev.Op)
	b = append(b, " addr=0x"...)
	b = strconv.AppendUint(b, ev.Addr, 16)
	b = append(b, " len="...)
	b = strconv.AppendUint(b, uint64(ev.Len), 10)
	b = append(b, " batch="...)
	b = strconv.AppendUint(b, uint64(ev.Batch), 10)
	b = append(b, " aux="...)
	b = strconv.AppendUint(b, uint64(ev.Aux), 10)
	b = append(b, " t="...)
	b = strconv.AppendInt(b, ev.Time, 10)
	b = append(b, '\n')
	t.buf = b
	t.writeMarker(b)
}

// writeMarker writes b to trace_marker; t.mu must be held.
func (t *Tracer) writeMarker(b []byte) error {
	if _, err := t.marker.Write(b); err != nil {
		t.errs++
		t.lastErr = err
		return err
	}
	t.marks++
	return nil
}

// Freeze stops the buffer so the events leading up to now are kept: it writes
// a marker containing the freeze token, on which the kernel trigger turns the
// buffer off right after recording it, then also writes 0 to tracing_on in
// case the trigger was removed or did not fire. Later Marks are suppressed.
// Freezing a frozen tracer does nothing.
func (t *Tracer) Freeze(reason string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("freeze tracer: closed")
	}
	if t.frozen {
		return nil
	}
	t.frozen = true
	b := append(t.buf[:0], freezeToken+" reason="...)
	b = append(b, strings.Map(func(c rune) rune {
		if c == '\n' || c == '\r' {
			return ' '
		}
		return c
	}, reason)...)
	b = append(b, " t="...)
	b = strconv.AppendInt(b, Now(), 10)
	b = append(b, '\n')
	t.buf = b
	var merr error
	if err := t.writeMarker(b); err != nil {
		merr = fmt.Errorf("write freeze marker: %w", err)
	}
	return errors.Join(merr, t.writeCtl("tracing_on", "0"))
}

// Frozen reports whether Freeze has been called.
func (t *Tracer) Frozen() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.frozen
}

// Stats returns the tracer's counters.
func (t *Tracer) Stats() TracerStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return TracerStats{Marks: t.marks, Errors: t.errs, Suppressed: t.suppressed, LastErr: t.lastErr}
}

// Save copies the instance's trace (a non-consuming read of the buffer) to a
// new file at path, created with O_EXCL and mode 0600, and syncs it. Call it
// after Freeze to get a stable picture.
func (t *Tracer) Save(path string) error {
	_, err := t.SaveMax(path, math.MaxInt64)
	return err
}

// ErrTooLarge is returned by SaveMax when the trace is larger than allowed;
// nothing was written.
var ErrTooLarge = errors.New("larger than the bytes allowed")

// SaveMax is Save for a caller with a byte budget: the trace is read into
// memory first and written only if it is at most max bytes (else
// ErrTooLarge and no file). It returns the bytes written.
func (t *Tracer) SaveMax(path string, max int64) (int64, error) {
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return 0, errors.New("save trace: tracer closed")
	}
	src, err := os.Open(filepath.Join(t.dir, "trace"))
	if err != nil {
		return 0, fmt.Errorf("save trace: %w", err)
	}
	defer src.Close()
	var r io.Reader = src
	if max < math.MaxInt64 {
		r = io.LimitReader(src, max+1) // one more: tells "too large" from "exactly max"
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return 0, fmt.Errorf("save trace: %w", err)
	}
	if int64(len(data)) > max {
		return 0, fmt.Errorf("save trace: %w (%d)", ErrTooLarge, max)
	}
	dst, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("save trace: %w", err)
	}
	n, werr := dst.Write(data)
	serr := dst.Sync()
	if err := errors.Join(werr, serr, dst.Close()); err != nil {
		return int64(n), fmt.Errorf("save trace to %s: %w", path, err)
	}
	return int64(n), nil
}

// Close closes the marker, removes the freeze trigger and removes the
// instance (with its buffer: Save first). Closing twice returns nil. The
// removal is retried briefly because tracefs refuses it (EBUSY) while any of
// the instance's files is open, e.g. by a concurrent Save or a user's cat.
func (t *Tracer) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	var errs []error
	if t.marker != nil {
		if err := t.marker.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close trace_marker: %w", err))
		}
	}
	// rmdir would drop the trigger too, but removing it first keeps the
	// instance harmless if rmdir keeps failing.
	if err := t.writeCtl("events/ftrace/print/trigger", "!"+freezeTrigger); err != nil &&
		!errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.EINVAL) {
		errs = append(errs, err)
	}
	var rerr error
	for i := range 20 {
		if rerr = unix.Rmdir(t.dir); rerr == nil || rerr == unix.ENOENT || rerr != unix.EBUSY {
			break
		}
		time.Sleep(time.Duration(i+1) * time.Millisecond)
	}
	if rerr != nil && rerr != unix.ENOENT {
		errs = append(errs, fmt.Errorf("remove tracefs instance %s: %w", t.dir, rerr))
	}
	return errors.Join(errs...)
}
