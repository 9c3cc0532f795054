package protect

import (
	"math"
	"sync/atomic"
)

// rate is a GCRA (virtual scheduling) parameter pair in nanoseconds:
// one packet is worth interval, and tolerance is the burst. interval 0
// means "always over threshold" (a rate of 0).
type rate struct {
	interval, tolerance int64
}

func rateParams(pps, burst uint32) rate {
	if pps == 0 {
		return rate{}
	}
	iv := int64(1e9 / float64(pps))
	iv = max(iv, 1)
	return rate{interval: iv, tolerance: iv * int64(max(burst, 1))}
}

// hold is how long a meter stays over threshold after the excess stops:
// its theoretical arrival time may run that far past the tolerance. It
// keeps an attack that pauses for a few milliseconds from getting a fresh
// burst through each time.
const hold = int64(1e9)

// meter decides whether a packet class toward a scope is over its
// threshold. Unlike a token bucket that admits rate packets per second even
// during a flood, every packet advances the meter, so once the rate exceeds
// the threshold all of them are over until the rate falls below it again
// (for out-of-state protection: "drops only while the rate exceeds"). It is
// one atomic word, updated with CAS by any worker; time is the batch's
// coarse clock in nanoseconds.
type meter struct {
	tat atomic.Int64 // theoretical arrival time
	r   rate
	_   [48]byte // one cache line per meter: workers hammer it during floods
}

func (m *meter) init(pps, burst uint32) { m.r = rateParams(pps, burst) }

// over counts one packet at now and reports whether the class is over
// threshold (the packet does not conform).
func (m *meter) over(now int64) bool { return hit(&m.tat, m.r, now) }

func hit(tat *atomic.Int64, r rate, now int64) bool {
	if r.interval == 0 {
		return true
	}
	for {
		t := tat.Load()
		base := max(t, now)
		over := base-now > r.tolerance
		nt := base + r.interval
		if lim := now + r.tolerance + hold; nt > lim {
			nt = lim
		}
		if nt == t || tat.CompareAndSwap(t, nt) {
			return over
		}
	}
}

// limiter is a plain GCRA: packets over the rate are refused and do not
// count, so it admits rate per second however hard it is pushed (the
// challenge budget, the log budget).
type limiter struct {
	tat atomic.Int64
	r   rate
	_   [48]byte
}

func (l *limiter) init(pps, burst uint32) {
	if pps == 0 {
		pps = math.MaxUint32
	}
	l.r = rateParams(pps, burst)
}

func (l *limiter) allow(now int64) bool { return allowAt(&l.tat, l.r, now) }

// allowAt is a GCRA on tat: it reports whether one more event fits rate r
// at now, and spends it if so.
func allowAt(tat *atomic.Int64, r rate, now int64) bool {
	for {
		t := tat.Load()
		base := max(t, now)
		if base-now > r.tolerance {
			return false
		}
		if tat.CompareAndSwap(t, base+r.interval) {
			return true
		}
	}
}
