package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// cpuCgroupV1 is where the cgroup v1 cpu controller is mounted on this
// project's machines. Its tasks file takes single threads, which the
// in-process xskgate worker needs; cgroup v2 would need a threaded subtree.
const cpuCgroupV1 = "/sys/fs/cgroup/cpu"

// quotaPeriod is the bandwidth period: 10 ms, so that the quota (at least
// 1 ms in cgroup v1) can be a fraction down to 0.1 of a CPU.
const quotaPeriod = 10 * time.Millisecond

// limitDUT puts the AF_XDP device under test (xskgate's worker thread, or
// the external l2fwd's process) under a CPU bandwidth limit of
// Options.DUTQuota of one CPU, and returns the undo. Below its capacity
// the generator, not the path, sets a path's rate on this machine; under
// the same limit every AF_XDP path is saturated, and what it delivers is
// its capacity times the quota. Kernel paths (Linux forwarding, XDP
// redirect) run in softirq, which no cgroup limits: they are left alone.
func (b *bencher) limitDUT(d *dut) (func(), error) {
	nothing := func() {}
	if b.o.DUTQuota <= 0 || (d.g == nil && d.ext == 0) {
		return nothing, nil
	}
	if _, err := os.Stat(filepath.Join(cpuCgroupV1, "cpu.cfs_quota_us")); err != nil {
		return nil, fmt.Errorf("--dut-quota needs the cgroup v1 cpu controller at %s: %w", cpuCgroupV1, err)
	}
	removeStaleGroups()
	dir := filepath.Join(cpuCgroupV1, fmt.Sprintf("xskgate-bench-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("--dut-quota: %w", err)
	}
	period := quotaPeriod.Microseconds()
	quota := max(int64(b.o.DUTQuota*float64(period)), 1000)
	write := func(file, v string) error { return os.WriteFile(filepath.Join(dir, file), []byte(v), 0) }
	if err := write("cpu.cfs_period_us", strconv.FormatInt(period, 10)); err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("--dut-quota: %w", err)
	}
	if err := write("cpu.cfs_quota_us", strconv.FormatInt(quota, 10)); err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("--dut-quota: %w", err)
	}
	tids, err := b.dutThreads(d)
	if err == nil {
		for _, t := range tids {
			if err = write("tasks", strconv.Itoa(t)); err != nil {
				break
			}
		}
	}
	undo := func() {
		// Back to the root group (a thread that has exited is gone from
		// both), then the group can go.
		for _, t := range tids {
			os.WriteFile(filepath.Join(cpuCgroupV1, "tasks"), []byte(strconv.Itoa(t)), 0)
		}
		os.Remove(dir)
	}
	if err != nil {
		undo()
		return nil, fmt.Errorf("--dut-quota: %w", err)
	}
	return undo, nil
}

// dutThreads are the threads of the device under test: xskgate's workers
// (waiting for them to start) or every thread of the external process.
func (b *bencher) dutThreads(d *dut) ([]int, error) {
	if d.ext != 0 {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", d.ext))
		if err != nil {
			return nil, err
		}
		var tids []int
		for _, e := range ents {
			if t, err := strconv.Atoi(e.Name()); err == nil {
				tids = append(tids, t)
			}
		}
		return tids, nil
	}
	var tids []int
	deadline := time.Now().Add(5 * time.Second)
	for _, w := range d.g.Engine.Workers() {
		for w.Thread() == 0 {
			if time.Now().After(deadline) {
				return nil, errors.New("xskgate's worker did not start within 5 s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		tids = append(tids, w.Thread())
	}
	return tids, nil
}

// removeStaleGroups removes the groups of benches that are gone (killed
// before their undo ran): empty once their threads exited, so rmdir works.
func removeStaleGroups() {
	dirs, _ := filepath.Glob(filepath.Join(cpuCgroupV1, "xskgate-bench-*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "xskgate-bench-"))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, os.ErrNotExist) {
			os.Remove(d)
		}
	}
}
