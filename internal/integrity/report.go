package integrity

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/xskgate/xskgate/internal/flightrec"
	"github.com/xskgate/xskgate/internal/pcapng"
)

// report is the slow path of a violation: count, keep, log, capture, dump,
// mark and freeze ftrace. It runs on the worker that found it. What it
// writes is limited (evidence.go): a frame is captured only if its class
// has a token and it fits under the byte cap, a dump is taken on the first
// violation and then at most once a second, and only if it fits.
func (c *Checks) report(v *Violation, frame []byte, xdpLen uint32, haveMeta bool) {
	c.counts[v.Class].Add(1)
	now := time.Now()
	c.mu.Lock()
	first := c.nviol == 0
	c.nviol++
	if len(c.viols) < MaxViolations {
		c.viols = append(c.viols, *v)
	}
	dir := c.cfg.DumpDir
	dump := false
	if dir != "" {
		if first || now.Sub(c.lastDump) >= dumpInterval {
			dump = true
			c.lastDump = now
		} else {
			c.ev.dumpsInterval.Add(1)
		}
	}
	capture := dir != "" && frame != nil && c.ev.allowFrame(v.Class, now)
	logIt, skipped := c.logAllowedLocked(now)
	var recs []*flightrec.Recorder
	if dump {
		recs = append(recs, c.recs...)
	}
	c.mu.Unlock()

	if logIt {
		attrs := []slog.Attr{
			slog.String("class", v.Class.String()), slog.Int("worker", v.Worker), slog.String("iface", v.Iface),
			slog.Int("queue", v.Queue), slog.String("ring", v.Ring.String()), slog.Uint64("slot", uint64(v.Slot)),
			slog.String("addr", hex(v.Addr)), slog.Uint64("len", uint64(v.Len)),
			slog.String("expected", hex(v.Expected)), slog.String("got", hex(v.Got)),
			slog.Uint64("batch", v.Batch), slog.String("detail", v.Detail),
		}
		if skipped > 0 {
			attrs = append(attrs, slog.Int("suppressed", skipped))
		}
		c.log.LogAttrs(context.Background(), slog.LevelError, "integrity violation", attrs...)
	}
	if capture {
		c.capture(v, frame, xdpLen, haveMeta)
	}
	if dump {
		path, err := c.dump(v.Class.String(), recs)
		switch {
		case errors.Is(err, ErrEvidenceCap):
		case err != nil:
			c.log.Error("cannot dump flight recorders", "err", err)
		default:
			c.log.Warn("flight recorders dumped", "path", path, "class", v.Class.String())
		}
	}
	if c.tracer != nil {
		c.tracer.Mark(flightrec.Event{Time: flightrec.Now(), Addr: v.Addr, Len: v.Len, Batch: uint32(v.Batch),
			Op: flightrec.Violation, Aux: uint32(v.Class)}, v.Iface, v.Queue)
		if first {
			if err := c.tracer.Freeze(v.String()); err != nil {
				c.log.Warn("cannot freeze ftrace instance", "err", err)
			}
			if err := c.saveTrace(); err != nil {
				c.log.Warn("cannot save ftrace buffer", "err", err)
			}
		}
	}
}

// capture writes the violating frame to the pcapng file with the violation
// as its comment, if it fits under the byte cap.
func (c *Checks) capture(v *Violation, frame []byte, xdpLen uint32, haveMeta bool) {
	var b strings.Builder
	fmt.Fprintf(&b, "violation=%s addr=%#x desc_len=%d", v.Class, v.Addr, v.Len)
	if haveMeta {
		fmt.Fprintf(&b, " xdp_len=%d", xdpLen)
	} else {
		b.WriteString(" xdp_len=none")
	}
	fmt.Fprintf(&b, " expected=%#x got=%#x worker=%d iface=%s queue=%d ring=%s slot=%d batch=%d detail=%q",
		v.Expected, v.Got, v.Worker, v.Iface, v.Queue, v.Ring, v.Slot, v.Batch, v.Detail)
	rec := pcapng.Record{Time: v.Time, Iface: v.Iface, Queue: uint32(v.Queue), Data: frame,
		Comment: b.String(), PacketID: v.Addr}

	// The write happens under c.mu, so that the file's growth is this
	// record's: one write(2), at most CaptureRate a second per class.
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pcap == nil {
		if c.pcapErr {
			return
		}
		w, err := pcapng.Create(c.cfg.DumpDir, evidenceName("violations", ".pcapng"))
		if err != nil {
			c.pcapErr = true
			c.log.Error("cannot create violation capture", "dir", c.cfg.DumpDir, "err", err)
			return
		}
		c.pcap = w
	}
	cost := c.pcap.Cost(rec)
	if !c.ev.take(cost) {
		c.ev.framesCap[v.Class].Add(1)
		c.capReachedLocked(fmt.Sprintf("a pcapng frame of %d bytes", cost))
		return
	}
	before := c.pcap.Size()
	err := c.pcap.Write(rec)
	c.ev.settle(cost, c.pcap.Size()-before)
	if err != nil {
		c.log.Warn("cannot capture violating frame", "err", err)
	}
}

// dump renders recs in memory and writes the dump file if it fits under
// the byte cap; ErrEvidenceCap if not.
func (c *Checks) dump(reason string, recs []*flightrec.Recorder) (string, error) {
	var b bytes.Buffer
	if err := flightrec.Dump(&b, reason, recs...); err != nil {
		return "", err
	}
	n := int64(b.Len())
	c.mu.Lock()
	ok := c.ev.take(n)
	if !ok {
		c.ev.dumpsCap.Add(1)
		c.capReachedLocked(fmt.Sprintf("a flight recorder dump of %d bytes", n))
	}
	c.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("integrity: flight recorder dump of %d bytes not written: %w (integrity.evidence_max_bytes %d, %d used in %s)",
			n, ErrEvidenceCap, c.ev.max, c.ev.usedNow.Load(), c.cfg.DumpDir)
	}
	path, err := flightrec.WriteDumpFile(c.cfg.DumpDir, reason, b.Bytes())
	if path != "" {
		c.mu.Lock()
		c.dumps = append(c.dumps, path)
		c.mu.Unlock()
	}
	return path, err
}

// saveTrace copies the frozen ftrace buffer to DumpDir once, if it fits
// under the byte cap.
func (c *Checks) saveTrace() error {
	c.mu.Lock()
	if c.tracer == nil || c.traceSaved || c.cfg.DumpDir == "" || !c.tracer.Frozen() {
		c.mu.Unlock()
		return nil
	}
	c.traceSaved = true
	// Reserve what is left; settle to what the file took.
	room := c.ev.remaining()
	c.ev.take(room)
	c.mu.Unlock()
	if err := os.MkdirAll(c.cfg.DumpDir, 0o700); err != nil {
		c.mu.Lock()
		c.ev.settle(room, 0)
		c.mu.Unlock()
		return err
	}
	n, err := c.tracer.SaveMax(c.evidenceFile("ftrace", ".txt"), room)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ev.settle(room, n)
	if errors.Is(err, flightrec.ErrTooLarge) {
		c.ev.traceCap.Add(1)
		c.ev.capped = true
		c.capReachedLocked(fmt.Sprintf("the frozen ftrace buffer (over the %d bytes left)", room))
		return nil
	}
	return err
}

// logAllowedLocked rate-limits violation log lines to logBurst a second.
func (c *Checks) logAllowedLocked(now time.Time) (ok bool, skipped int) {
	sec := now.Unix()
	if sec != c.logSec {
		c.logSec, c.logN = sec, 0
	}
	if c.logN >= logBurst {
		c.logSkipped++
		return false, 0
	}
	c.logN++
	skipped, c.logSkipped = c.logSkipped, 0
	return true, skipped
}
