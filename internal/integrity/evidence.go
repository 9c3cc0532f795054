package integrity

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// Evidence limits. A storm of violations (a buggy driver, a flood of
// malformed descriptors) must not fill the disk or spend the workers' time
// writing files: pcapng frames are rate-limited per violation class,
// flight recorder dumps to one a second, and every file xskgate writes in
// DumpDir counts against one byte cap.
const (
	// DefaultMaxBytes caps the evidence files in DumpDir.
	DefaultMaxBytes = 256 << 20
	// DefaultCaptureRate and DefaultCaptureBurst are each class's token
	// bucket for pcapng frames: the first 100 frames of a class are all
	// captured, then 10 a second.
	DefaultCaptureRate  = 10
	DefaultCaptureBurst = 100
	// dumpInterval is the least time between two flight recorder dumps
	// taken on violations (the first is always taken).
	dumpInterval = time.Second
)

// evidencePrefixes name the files xskgate writes in DumpDir: the pcapng
// capture, flight recorder dumps, saved ftrace buffers. Files of earlier
// runs with these names count against the cap.
var evidencePrefixes = []string{"violations-", "flightrec-", "ftrace-"}

// ErrEvidenceCap is returned by DumpNow when the dump would take the
// evidence files in DumpDir over Config.MaxBytes.
var ErrEvidenceCap = errors.New("evidence byte cap reached")

// budget is the evidence limits' state. Its fields other than the atomic
// counters are guarded by Checks.mu.
type budget struct {
	max    int64
	used   int64 // bytes of evidence files in the directory, earlier runs' included
	capped bool  // something was refused: logged once
	rate   float64
	burst  float64
	bucket [NumClasses]struct {
		tokens float64
		last   time.Time
	}

	framesRate    [NumClasses]atomic.Uint64 // frames over their class's rate
	framesCap     [NumClasses]atomic.Uint64 // frames refused at the cap
	dumpsInterval atomic.Uint64             // dumps not taken: within dumpInterval of the last
	dumpsCap      atomic.Uint64             // dumps refused at the cap
	traceCap      atomic.Uint64             // ftrace buffers refused at the cap
	usedNow       atomic.Int64              // used, for readers without the mutex
}

func (b *budget) init(cfg Config) {
	b.max, b.rate, b.burst = cfg.MaxBytes, cfg.CaptureRate, float64(cfg.CaptureBurst)
	for i := range b.bucket {
		b.bucket[i].tokens = b.burst
	}
}

// allowFrame takes a token from class's bucket; a frame without one is
// counted and not captured.
func (b *budget) allowFrame(class Class, now time.Time) bool {
	k := &b.bucket[class]
	if !k.last.IsZero() {
		k.tokens = min(b.burst, k.tokens+now.Sub(k.last).Seconds()*b.rate)
	}
	k.last = now
	if k.tokens >= 1 {
		k.tokens--
		return true
	}
	b.framesRate[class].Add(1)
	return false
}

// take reserves n bytes; false (and capped) if they do not fit.
func (b *budget) take(n int64) bool {
	if n < 0 || b.used+n > b.max {
		b.capped = true
		return false
	}
	b.add(n)
	return true
}

// settle corrects a reservation to what was really written.
func (b *budget) settle(reserved, written int64) { b.add(written - reserved) }

func (b *budget) add(n int64) {
	b.used += n
	b.usedNow.Store(b.used)
}

func (b *budget) remaining() int64 { return max(0, b.max-b.used) }

// existingEvidence sums the sizes of the evidence files already in dir
// (none if it does not exist yet).
func existingEvidence(dir string) (int64, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range ents {
		if !e.Type().IsRegular() || !isEvidence(e.Name()) {
			continue
		}
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n, nil
}

func isEvidence(name string) bool {
	for _, p := range evidencePrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// capReachedLocked says once, at the first refusal, what happens from now
// on and how to get all evidence again. c.mu is held.
func (c *Checks) capReachedLocked(what string) {
	if c.capLogged {
		return
	}
	c.capLogged = true
	c.log.Error(fmt.Sprintf("integrity evidence cap reached: %s does not fit under integrity.evidence_max_bytes (%d bytes, %d used in %s) and is not written; from now on a pcapng frame, flight recorder dump or ftrace buffer that does not fit is not written, only counted (`xskgate violations`), while violations are still detected, counted and logged; to keep collecting, move old evidence files out of %s or raise integrity.evidence_max_bytes, then restart",
		what, c.ev.max, c.ev.used, c.cfg.DumpDir, c.cfg.DumpDir),
		"dir", c.cfg.DumpDir, "bytes", c.ev.used, "max_bytes", c.ev.max)
}

// EvidenceStats say how much evidence was written and what was not.
type EvidenceStats struct {
	Dir        string `json:"dir"`
	Bytes      int64  `json:"bytes"` // evidence files in Dir, earlier runs' included
	MaxBytes   int64  `json:"max_bytes"`
	CapReached bool   `json:"cap_reached"` // something did not fit and was not written
	// Frames of violations not written to the pcapng capture, by class:
	// over the class's capture rate, or refused at the byte cap.
	FramesRateLimited [NumClasses]uint64 `json:"-"`
	FramesCapped      [NumClasses]uint64 `json:"-"`
	// Flight recorder dumps not taken within a second of the previous one,
	// dumps and ftrace buffers refused at the cap.
	DumpsInterval uint64 `json:"dumps_interval"`
	DumpsCapped   uint64 `json:"dumps_capped"`
	TraceCapped   uint64 `json:"ftrace_capped"`
}

// Evidence returns the evidence limits' counters. Safe from any goroutine.
func (c *Checks) Evidence() EvidenceStats {
	b := &c.ev
	s := EvidenceStats{Dir: c.cfg.DumpDir, Bytes: b.usedNow.Load(), MaxBytes: b.max,
		DumpsInterval: b.dumpsInterval.Load(), DumpsCapped: b.dumpsCap.Load(), TraceCapped: b.traceCap.Load()}
	for i := range s.FramesRateLimited {
		s.FramesRateLimited[i] = b.framesRate[i].Load()
		s.FramesCapped[i] = b.framesCap[i].Load()
	}
	c.mu.Lock()
	s.CapReached = b.capped
	c.mu.Unlock()
	return s
}

// NotCaptured is the number of violating frames not written to the pcapng
// capture, over the rate limit and at the cap.
func (s EvidenceStats) NotCaptured() (rate, capped uint64) {
	for i := range s.FramesRateLimited {
		rate += s.FramesRateLimited[i]
		capped += s.FramesCapped[i]
	}
	return rate, capped
}

// evidenceName names a new evidence file: prefix, the UTC time to the
// nanosecond and the PID, then ext.
func evidenceName(prefix, ext string) string {
	return fmt.Sprintf("%s-%s-%d%s", prefix, time.Now().UTC().Format("20060102T150405.000000000Z"), os.Getpid(), ext)
}

// evidenceFile is a path in DumpDir for a new evidence file.
func (c *Checks) evidenceFile(prefix, ext string) string {
	return filepath.Join(c.cfg.DumpDir, evidenceName(prefix, ext))
}
