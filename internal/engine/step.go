package engine

// Step runs one iteration of the worker's loop (complete, refill, receive
// and inspect, transmit; see the package doc) on the caller's goroutine and
// returns how many descriptors moved. It is for step-driven tests on
// kmodel, where the test plays the kernel (Poll) and the worker in an
// order it chooses, so that a run replays exactly (the integrity fuzzer).
// The caller takes the place of the worker's goroutine: never call Step on
// an engine that was Started. An error is what would stop the worker.
func (w *Worker) Step() (int, error) { return w.iterate(true) }
