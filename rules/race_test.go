//go:build race

package rules

// raceEnabled is set when the race detector is on: sync.Pool then drops
// items at random, so regexp matching allocates now and then.
const raceEnabled = true
