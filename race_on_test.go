//go:build race

package memo_test

// raceEnabled: the race detector changes allocation sizes.
const raceEnabled = true
