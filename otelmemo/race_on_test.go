//go:build race

package otelmemo_test

// raceEnabled: the race detector changes allocation counts.
const raceEnabled = true
