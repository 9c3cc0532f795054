package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestLimitDUT: --dut-quota puts every thread of an external device under
// test in a CPU group with the asked bandwidth, and its undo puts them back
// and removes the group; a group left by a bench that died is removed at
// the next start.
func TestLimitDUT(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (cgroup)")
	}
	if _, err := os.Stat(filepath.Join(cpuCgroupV1, "cpu.cfs_quota_us")); err != nil {
		t.Skipf("no cgroup v1 cpu controller: %v", err)
	}
	// A group of a bench that is gone (pid 0x3ffffff+1 exceeds pid_max).
	stale := filepath.Join(cpuCgroupV1, "xskgate-bench-67108864")
	if err := os.Mkdir(stale, 0o755); err != nil {
		t.Skipf("cannot create a CPU group here (a read-only cgroup mount?): %v", err)
	}
	t.Cleanup(func() { os.Remove(stale) })

	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	b := &bencher{o: Options{DUTQuota: 0.3}}
	undo, err := b.limitDUT(&dut{ext: cmd.Process.Pid})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale group still there: %v", err)
	}
	dir := filepath.Join(cpuCgroupV1, "xskgate-bench-"+strconv.Itoa(os.Getpid()))
	read := func(f string) string {
		v, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(v))
	}
	if q, p := read("cpu.cfs_quota_us"), read("cpu.cfs_period_us"); q != "3000" || p != "10000" {
		t.Errorf("quota %s per %s µs, want 3000 per 10000", q, p)
	}
	if tasks := read("tasks"); tasks != strconv.Itoa(cmd.Process.Pid) {
		t.Errorf("tasks %q, want the process's one thread %d", tasks, cmd.Process.Pid)
	}
	undo()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("group not removed: %v", err)
	}
	// Nothing to limit: kernel paths, or no quota.
	undo, err = (&bencher{o: Options{DUTQuota: 0.3}}).limitDUT(&dut{})
	if err != nil {
		t.Fatal(err)
	}
	undo()
}
