package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/keyhook/keyhook/bench/fixture"
	"github.com/keyhook/keyhook/bench/loadgen"
	"github.com/keyhook/keyhook/pkg/admission"
)

// inProcess runs the admission benchmarks of pkg/admission with go test and
// reads their ns/op and allocs/op.
func (s *suite) inProcess(ctx context.Context) error {
	args := []string{"test", "-run", "^$", "-bench", "^BenchmarkAdmission(HTTP)?$", "-benchmem", "-count", strconv.Itoa(s.cfg.Count)}
	if d := s.cfg.ProfileDir; d != "" {
		args = append(args, "-cpuprofile", filepath.Join(d, "admission.cpu.pprof"), "-memprofile", filepath.Join(d, "admission.allocs.pprof"), "-o", filepath.Join(d, "admission.test"))
	}
	args = append(args, "./pkg/admission")
	logf("go %s", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "go", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w\n%s", err, out.String())
	}
	handleNs := s.add(&figure{name: "admission in-process, Handle (go test -bench)", unit: "µs/op", target: atMost(50)})
	handleAllocs := s.add(&figure{name: "admission in-process, Handle", unit: "allocs/op", target: atMost(150)})
	httpNs := s.add(&figure{name: "admission in-process, with AdmissionReview decode/encode (ServeHTTP)", unit: "µs/op"})
	httpAllocs := s.add(&figure{name: "admission in-process, ServeHTTP", unit: "allocs/op"})
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "BenchmarkAdmission") {
			continue
		}
		name := strings.SplitN(f[0], "-", 2)[0]
		vals := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err == nil {
				vals[f[i+1]] = v
			}
		}
		ns, allocs := handleNs, handleAllocs
		if name == "BenchmarkAdmissionHTTP" {
			ns, allocs = httpNs, httpAllocs
		}
		ns.runs = append(ns.runs, vals["ns/op"]/1000)
		allocs.runs = append(allocs.runs, vals["allocs/op"])
	}
	logf("in-process: Handle %s µs/op, %s allocs/op", format(handleNs.median()), format(handleAllocs.median()))
	if s.cfg.ProfileDir != "" {
		s.notef("admission profiles: go tool pprof %s %s (and admission.allocs.pprof)", filepath.Join(s.cfg.ProfileDir, "admission.test"), filepath.Join(s.cfg.ProfileDir, "admission.cpu.pprof"))
	}
	return nil
}

// benchPod is the fixture pod for creating through the API server: no
// owner (the garbage collector would delete a pod of a missing ReplicaSet).
func benchPod(ns string) *corev1.Pod {
	p := fixture.Pod(ns)
	p.OwnerReferences = nil
	return p
}

// tls drives the running webhook with the load generator: one stream, then
// Concurrency streams, and reads the server's CPU time and peak RSS.
func (s *suite) tls(ctx context.Context) error {
	e := s.env
	ns, err := e.tenant(ctx, "bench-admission")
	if err != nil {
		return err
	}
	for _, es := range fixture.ExternalSecrets(ns) {
		if err := e.client.Create(ctx, es); err != nil {
			return err
		}
	}
	review, err := loadgen.NewReview(fixture.Pod(ns))
	if err != nil {
		return err
	}
	s.notef("AdmissionReview of the fixture pod: %d bytes", review.Size())
	pid := e.webhook.Proc.Pid()
	url := e.webhook.URL + admission.PodPath
	idle, err := memStatus(pid, "VmRSS")
	if err != nil {
		return err
	}
	s.add(&figure{name: "webhook RSS before any admission (informers synced, idle)", unit: "MiB", runs: []float64{idle}})

	p50 := s.add(&figure{name: "admission over TLS, single stream: p50", unit: "ms", target: atMost(0.3)})
	p99 := s.add(&figure{name: "admission over TLS, single stream: p99", unit: "ms", target: atMost(0.8)})
	rps1 := s.add(&figure{name: "admission over TLS, single stream: throughput", unit: "req/s"})
	cpu1 := s.add(&figure{name: "server CPU per admission, single stream", unit: "ms", target: atMost(0.15)})
	rpsN := s.add(&figure{name: fmt.Sprintf("admission over TLS, concurrency %d: throughput", s.cfg.Concurrency), unit: "req/s", target: atLeast(6000)})
	p99N := s.add(&figure{name: fmt.Sprintf("admission over TLS, concurrency %d: p99", s.cfg.Concurrency), unit: "ms", target: atMost(15)})
	errN := s.add(&figure{name: fmt.Sprintf("admission over TLS, concurrency %d: errors", s.cfg.Concurrency), unit: "", target: atMost(0)})
	cpuN := s.add(&figure{name: fmt.Sprintf("server CPU per admission, concurrency %d", s.cfg.Concurrency), unit: "ms", target: atMost(0.15)})
	rss := s.add(&figure{name: "webhook peak RSS (VmHWM) under that load, webhook role alone", unit: "MiB", target: atMost(30)})

	measure := func(conc int, d time.Duration) (*loadgen.Result, time.Duration, error) {
		var cpuStart, cpuEnd time.Duration
		var cerr error
		res, err := loadgen.Run(ctx, loadgen.Config{
			URL: url, CAPEM: e.webhook.CAPEM, Review: review, WantSecrets: fixture.InjectedNames,
			Concurrency: conc, Duration: d, Warmup: s.cfg.Warmup,
		}, func(start bool) {
			t, err := cpuTime(pid)
			if err != nil {
				cerr = err
			}
			if start {
				cpuStart = t
			} else {
				cpuEnd = t
			}
		})
		if err == nil {
			err = cerr
		}
		if err != nil {
			return nil, 0, err
		}
		logf("%s; server CPU %s, %d distinct patches checked", res, cpuEnd-cpuStart, res.DistinctPatches)
		if res.Errors > 0 {
			logf("first error: %v", res.FirstError)
		}
		return res, cpuEnd - cpuStart, nil
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	perAdmission := func(cpu time.Duration, res *loadgen.Result) float64 {
		ok := res.Requests - res.Errors
		if ok == 0 {
			return 0
		}
		return ms(cpu) / float64(ok)
	}
	for range s.cfg.Runs {
		res, cpu, err := measure(1, s.cfg.SingleDuration)
		if err != nil {
			return err
		}
		p50.runs = append(p50.runs, ms(res.Quantile(0.5)))
		p99.runs = append(p99.runs, ms(res.Quantile(0.99)))
		rps1.runs = append(rps1.runs, res.RPS())
		cpu1.runs = append(cpu1.runs, perAdmission(cpu, res))
		if res.Errors > 0 {
			s.notef("single stream: %d errors, first: %v", res.Errors, res.FirstError)
		}
	}
	for range s.cfg.Runs {
		res, cpu, err := measure(s.cfg.Concurrency, s.cfg.ConcDuration)
		if err != nil {
			return err
		}
		rpsN.runs = append(rpsN.runs, res.RPS())
		p99N.runs = append(p99N.runs, ms(res.Quantile(0.99)))
		errN.runs = append(errN.runs, float64(res.Errors))
		cpuN.runs = append(cpuN.runs, perAdmission(cpu, res))
		if res.Errors > 0 {
			s.notef("concurrency %d: %d errors, first: %v", s.cfg.Concurrency, res.Errors, res.FirstError)
		}
		hwm, err := memStatus(pid, "VmHWM")
		if err != nil {
			return err
		}
		rss.runs = append(rss.runs, hwm)
	}
	rss.note = "peak after each run"
	if m, err := scrape(e.webhook.MetricsURL); err == nil {
		s.notef("webhook after the load: Go heap in use %.1f MiB, memory obtained from the OS by the Go runtime %.1f MiB, %.0f goroutines, VmHWM %.1f MiB",
			m.sum("go_memstats_heap_inuse_bytes")/(1<<20), m.sum("go_memstats_sys_bytes")/(1<<20), m.sum("go_goroutines"), rss.runs[len(rss.runs)-1])
	}
	s.tenantNS = ns
	return nil
}
