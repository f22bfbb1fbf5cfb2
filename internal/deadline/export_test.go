package deadline

// pending reports how many contexts the shared timer holds.
func pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.heap)
}

// armed reports whether the shared timer is armed.
func armed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.armed != 0
}

// pauseTimer stops the shared timer and keeps it from being armed again
// until resumeTimer: pending contexts then end only through Err, the
// parent, or Release.
func pauseTimer() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil {
		w.timer.Stop()
	}
	w.armed = 1 << 62 // "armed" later than any deadline: add never re-arms
}

func resumeTimer() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed = 0
	if len(w.heap) > 0 {
		w.arm(fireAt(w.heap[0].when), now())
	}
}
