package engine

// SetLinkDown tells the workers that side's link is down (or up again).
// While it is down nothing is posted to its TX rings: the kernel would
// leave the frames there (ENETDOWN) or never complete them (the device is
// gone), so frames for that side are dropped and counted (DropLinkDown)
// instead, and shutdown does not wait for the ones already there. Workers
// read the flag once per batch.
func (e *Engine) SetLinkDown(s Side, down bool) { e.down[s].Store(down) }

// LinkDown reports whether SetLinkDown marked side s down.
func (e *Engine) LinkDown(s Side) bool { return e.down[s].Load() }

// txWaiting counts the frames on TX that will complete: those of sides
// whose link is up.
func (w *Worker) txWaiting() int {
	n := 0
	for i := range w.ports {
		if !w.e.down[i].Load() {
			n += w.ports[i].txOut
		}
	}
	return n
}

// leftOnDownTx says, at shutdown, which frames stay on the TX ring of a
// side whose link is down: they stay counted as tx.
func (w *Worker) leftOnDownTx() {
	for i := range w.ports {
		if p := &w.ports[i]; w.e.down[i].Load() && p.txOut > 0 {
			w.e.log.Info("frames left on the TX ring of a down link, not waited for", "worker", w.id,
				"side", p.side.String(), "iface", p.Ifname(), "tx", p.txOut)
		}
	}
}
