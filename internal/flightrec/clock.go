package flightrec

import (
	"math"
	"time"

	"golang.org/x/sys/unix"
)

// base anchors the runtime's monotonic clock; time.Since(base) is a single
// vDSO clock_gettime(CLOCK_MONOTONIC) read minus a constant.
var base = time.Now()

// monoAtBase is CLOCK_MONOTONIC (ns) at base; calibErr bounds its error.
var monoAtBase, calibErr = calibrate()

// calibrate measures CLOCK_MONOTONIC at base by bracketing a clock_gettime
// syscall between two reads of the runtime clock and keeping the narrowest
// bracket. Both are the same kernel clock, so the offset is constant.
func calibrate() (offset int64, errBound time.Duration) {
	best := int64(math.MaxInt64)
	for range 16 {
		var ts unix.Timespec
		before := int64(time.Since(base))
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			// Cannot happen on Linux; keep times relative to base rather
			// than failing package init, and say so through the bound.
			return 0, -1
		}
		after := int64(time.Since(base))
		if w := after - before; w < best {
			best = w
			offset = ts.Nano() - (before + w/2)
		}
	}
	return offset, time.Duration(best/2 + 1)
}

// Now returns the current CLOCK_MONOTONIC time in nanoseconds, the clock
// ftrace calls "mono". It does not allocate and makes no syscall.
func Now() int64 {
	return monoAtBase + int64(time.Since(base))
}

// CalibrationError bounds the error of [Now] against CLOCK_MONOTONIC. It is
// negative if calibration failed, in which case Now counts from package
// initialisation instead.
func CalibrationError() time.Duration {
	return calibErr
}
