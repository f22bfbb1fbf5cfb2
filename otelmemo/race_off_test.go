//go:build !race

package otelmemo_test

const raceEnabled = false
