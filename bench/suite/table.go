package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// target is a bound a figure is held to.
type target struct {
	op    string // "<=", ">=", or "" for a figure without target
	value float64
}

func atMost(v float64) target  { return target{op: "<=", value: v} }
func atLeast(v float64) target { return target{op: ">=", value: v} }
func exactly(v float64) target { return target{op: "==", value: v} }

func (t target) String(unit string) string {
	switch t.op {
	case "<=":
		return strings.TrimSpace("≤ " + strconv.FormatFloat(t.value, 'f', -1, 64) + " " + unit)
	case ">=":
		return strings.TrimSpace("≥ " + strconv.FormatFloat(t.value, 'f', -1, 64) + " " + unit)
	case "==":
		return strings.TrimSpace("= " + strconv.FormatFloat(t.value, 'f', -1, 64) + " " + unit)
	}
	return "—"
}

func (t target) met(v float64) bool {
	switch t.op {
	case "<=":
		return v <= t.value
	case ">=":
		return v >= t.value
	case "==":
		return v == t.value
	}
	return true
}

// figure is one row of the table: a measured quantity, one value per run.
type figure struct {
	name   string
	unit   string
	runs   []float64
	target target
	note   string
}

func (f *figure) median() float64 {
	if len(f.runs) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(f.runs))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func (f *figure) result() string {
	switch {
	case len(f.runs) == 0:
		return "not measured"
	case f.target.op == "":
		return "—"
	case f.target.met(f.median()):
		return "pass"
	}
	return "**short**"
}

// format prints a value with three significant digits, without exponent.
func format(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	a := math.Abs(v)
	switch {
	case v == math.Trunc(v) && a < 1e6:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a == 0 || a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// markdown renders the figures as one table.
func markdown(figs []*figure) string {
	var b strings.Builder
	b.WriteString("| figure | median | min–max | runs | target | result |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, f := range figs {
		med, rng := "—", "—"
		if len(f.runs) > 0 {
			med = strings.TrimSpace(format(f.median()) + " " + f.unit)
			rng = format(slices.Min(f.runs)) + "–" + format(slices.Max(f.runs))
		}
		name := f.name
		if f.note != "" {
			name += " (" + f.note + ")"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %s | %s |\n", name, med, rng, len(f.runs), f.target.String(f.unit), f.result())
	}
	return b.String()
}
