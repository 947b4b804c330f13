package server

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

var buckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// metrics are the contract's counters and histogram for one function (Prometheus text format).
type metrics struct {
	mu       sync.Mutex
	calls    uint64
	failures uint64
	counts   []uint64
	sum      float64
}

func newMetrics() *metrics { return &metrics{counts: make([]uint64, len(buckets))} }

func (m *metrics) record(d time.Duration, failed bool) {
	s := d.Seconds()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if failed {
		m.failures++
	}
	m.sum += s
	for i, le := range buckets {
		if s <= le {
			m.counts[i]++
		}
	}
}

func (m *metrics) render(function string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	label := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(function)
	var b strings.Builder
	fmt.Fprintf(&b, "# HELP function_calls_total Invocations of the function.\n# TYPE function_calls_total counter\n")
	fmt.Fprintf(&b, "function_calls_total{function=\"%s\"} %d\n", label, m.calls)
	fmt.Fprintf(&b, "# HELP function_failures_total Invocations that failed.\n# TYPE function_failures_total counter\n")
	fmt.Fprintf(&b, "function_failures_total{function=\"%s\"} %d\n", label, m.failures)
	fmt.Fprintf(&b, "# HELP function_duration_seconds Invocation duration.\n# TYPE function_duration_seconds histogram\n")
	for i, le := range buckets {
		fmt.Fprintf(&b, "function_duration_seconds_bucket{function=\"%s\",le=\"%s\"} %d\n", label,
			strconv.FormatFloat(le, 'f', -1, 64), m.counts[i])
	}
	fmt.Fprintf(&b, "function_duration_seconds_bucket{function=\"%s\",le=\"+Inf\"} %d\n", label, m.calls)
	fmt.Fprintf(&b, "function_duration_seconds_sum{function=\"%s\"} %s\n", label, strconv.FormatFloat(m.sum, 'f', -1, 64))
	fmt.Fprintf(&b, "function_duration_seconds_count{function=\"%s\"} %d\n", label, m.calls)
	return b.String()
}
