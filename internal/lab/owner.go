package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// OwnerDir holds one file per lab that belongs to a process (tests, the
// demo, the bench): the PID and start time of the process that built it.
// When the process is killed before its cleanup runs (SIGKILL, a test
// binary's timeout), the next Up finds the owner gone and removes the lab
// (ReapStale), so that a killed run leaves nothing behind for long.
// Persistent labs (`xskgate lab up`) have no owner record and stay until
// `xskgate lab down`.
var OwnerDir = "/run/xskgate/labs"

// owner identifies a process across PID reuse: its PID and its start time
// in clock ticks since boot (/proc/PID/stat field 22).
type owner struct {
	pid   int
	start uint64
}

func (o owner) String() string { return fmt.Sprintf("%d %d\n", o.pid, o.start) }

// processStart reads a process's start time, ok false if it does not exist.
func processStart(pid int) (uint64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields after it start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field 22 (starttime) is f[19].
	if len(f) < 20 {
		return 0, false
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	return start, err == nil
}

func self() (owner, error) {
	pid := os.Getpid()
	start, ok := processStart(pid)
	if !ok {
		return owner{}, fmt.Errorf("lab: reading /proc/%d/stat: is /proc mounted?", pid)
	}
	return owner{pid: pid, start: start}, nil
}

func ownerPath(prefix string) string { return filepath.Join(OwnerDir, prefix) }

// writeOwner records this process as the owner of prefix's lab, before any
// namespace of it exists: a kill mid-build leaves a lab that is reaped too.
func writeOwner(prefix string) error {
	o, err := self()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(OwnerDir, 0o755); err != nil {
		return fmt.Errorf("lab: recording the lab's owner: %w", err)
	}
	if err := os.WriteFile(ownerPath(prefix), []byte(o.String()), 0o644); err != nil {
		return fmt.Errorf("lab: recording the lab's owner: %w", err)
	}
	return nil
}

func removeOwner(prefix string) error {
	if err := os.Remove(ownerPath(prefix)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("lab: removing the owner record of %s: %w", prefix, err)
	}
	return nil
}

// readOwner returns the recorded owner of prefix's lab, ok false when it has
// none (or the record is unreadable: such a lab is never reaped).
func readOwner(prefix string) (owner, bool) {
	b, err := os.ReadFile(ownerPath(prefix))
	if err != nil {
		return owner{}, false
	}
	var o owner
	if _, err := fmt.Sscanf(string(b), "%d %d", &o.pid, &o.start); err != nil || o.pid <= 0 {
		return owner{}, false
	}
	return o, true
}

// OwnerState says who owns the lab with this prefix: "" when it has no
// owner record (a persistent lab), "pid N" while its process
// runs, "stale: pid N is gone" once the process died without removing it.
func OwnerState(prefix string) string {
	o, ok := readOwner(prefix)
	switch {
	case !ok:
		return ""
	case alive(o):
		return fmt.Sprintf("pid %d", o.pid)
	default:
		return fmt.Sprintf("stale: pid %d is gone", o.pid)
	}
}

func alive(o owner) bool {
	start, ok := processStart(o.pid)
	return ok && start == o.start
}

// ReapStale removes every lab whose owner process is gone and returns their
// prefixes. Labs without an owner record are left alone. Up calls it before
// building a lab that is not persistent; `xskgate lab down --stale` too.
func ReapStale() ([]string, error) {
	// Only labs with an owner record can be stale: reading the records
	// alone finds them, and those whose lab is already gone (removed by
	// hand) lose their record too (Remove deletes it).
	ents, err := os.ReadDir(OwnerDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lab: listing %s: %w", OwnerDir, err)
	}
	var reaped []string
	var errs []error
	for _, e := range ents {
		p := e.Name()
		if ValidatePrefix(p) != nil {
			continue
		}
		if o, ok := readOwner(p); !ok || alive(o) {
			continue
		}
		c, g, s := NSNames(p)
		existed := nsExists(c) || nsExists(g) || nsExists(s)
		if err := Remove(p); err != nil {
			errs = append(errs, err)
			continue
		}
		if existed {
			reaped = append(reaped, p)
		}
	}
	return reaped, errors.Join(errs...)
}
