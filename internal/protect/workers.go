package protect

import "fmt"

// SetWorkers sizes the per-worker state for the engine's n workers (the
// gate's queue count, known once the gate is open). Call it before the
// workers start and before anything reads Stats: Inspect reads that state
// without a lock.
func (i *Inspector) SetWorkers(n int) error {
	if n < 1 || n > maxWorkers {
		return fmt.Errorf("protect: %d workers out of range [1, %d]", n, maxWorkers)
	}
	if n != len(i.workers) {
		i.workers = make([]workerState, n)
	}
	return nil
}

// Workers is how many workers the Inspector is sized for.
func (i *Inspector) Workers() int { return len(i.workers) }

// outOfRange handles a batch from a worker the Inspector was not sized for:
// a wiring bug. Failing closed would cut every connection through that
// queue, so the frames pass uninspected, but never silently: counted as
// bypass worker_out_of_range and logged once with the fix.
func (i *Inspector) outOfRange(worker, n int) {
	i.workers[0].c.bypass[bWorkerOutOfRange].v.Add(uint64(n))
	if i.outOfRangeLogged.CompareAndSwap(false, true) {
		i.log.Error(fmt.Sprintf("protect: worker %d is beyond the %d workers the TCP protection was sized for: its frames pass UNINSPECTED (counted in xskgate_protect_bypass_total{reason=\"worker_out_of_range\"}); size it to the gate's queue count with Inspector.SetWorkers before the workers start", worker, len(i.workers)),
			"worker", worker, "workers", len(i.workers))
	}
}
