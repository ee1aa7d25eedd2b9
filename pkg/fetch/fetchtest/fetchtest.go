// Package fetchtest holds helpers for the tests of providers.
package fetchtest

// Chain returns err and every error it wraps, depth first: what a leak test
// searches for a value that must not be there.
func Chain(err error) []error {
	out := []error{err}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		if next := u.Unwrap(); next != nil {
			out = append(out, Chain(next)...)
		}
	case interface{ Unwrap() []error }:
		for _, next := range u.Unwrap() {
			out = append(out, Chain(next)...)
		}
	}
	return out
}
