package bench

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// cpuTime is one CPU's line of /proc/stat, in clock ticks: busy is every
// field but idle and iowait (user, system, softirq, irq, steal...).
type cpuTime struct{ busy, total uint64 }

// cpuTimes reads CPU cpu's times; zero if it cannot.
func cpuTimes(cpu int) cpuTime {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return cpuTime{}
	}
	defer f.Close()
	want := "cpu" + strconv.Itoa(cpu)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 5 || fs[0] != want {
			continue
		}
		var t cpuTime
		for i, s := range fs[1:] {
			n, _ := strconv.ParseUint(s, 10, 64)
			t.total += n
			if i != 3 && i != 4 { // idle, iowait
				t.busy += n
			}
		}
		return t
	}
	return cpuTime{}
}

// busyUntil is the busy share of the time between t and u.
func (t cpuTime) busyUntil(u cpuTime) float64 {
	if u.total <= t.total {
		return 0
	}
	return float64(u.busy-t.busy) / float64(u.total-t.total)
}
