package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keyhook/keyhook/bench/fixture"
)

// fixtureTenant returns the namespace with the fixture's store and
// ExternalSecrets, making it the first time.
func (s *suite) fixtureTenant(ctx context.Context) (string, error) {
	if s.tenantNS != "" {
		return s.tenantNS, nil
	}
	ns, err := s.env.tenant(ctx, "bench-admission")
	if err != nil {
		return "", err
	}
	for _, es := range fixture.ExternalSecrets(ns) {
		if err := s.env.client.Create(ctx, es); err != nil {
			return "", err
		}
	}
	s.tenantNS = ns
	return ns, nil
}

// apiserver measures pod creates through the real API server with and
// without keyhook registered, alternating, and reports what the webhook adds
// to the median.
func (s *suite) apiserver(ctx context.Context) error {
	e := s.env
	ns, err := s.fixtureTenant(ctx)
	if err != nil {
		return err
	}
	added := s.add(&figure{name: "pod create through the real API server, added by the webhook (median with − median without)", unit: "ms", target: atMost(1.5)})
	with := s.add(&figure{name: "pod create through the real API server, with keyhook", unit: "ms"})
	without := s.add(&figure{name: "pod create through the real API server, without keyhook", unit: "ms"})
	pods := e.clientset.CoreV1().Pods(ns)
	phase := func(on bool) (float64, error) {
		if err := e.register(ctx, on, ns); err != nil {
			return 0, fmt.Errorf("registering the webhook (%v): %w", on, err)
		}
		// A few unmeasured creates warm the API server's clients up.
		lat := make([]float64, 0, s.cfg.PodCreates)
		for i := -3; i < s.cfg.PodCreates; i++ {
			pod := benchPod(ns)
			start := time.Now()
			got, err := pods.Create(ctx, pod, metav1.CreateOptions{})
			d := time.Since(start)
			if err != nil {
				return 0, err
			}
			if _, injected := got.Annotations["keyhook.dev/status"]; injected != on {
				return 0, fmt.Errorf("pod %s: injected %v with the webhook registered %v", got.Name, injected, on)
			}
			if i >= 0 {
				lat = append(lat, float64(d)/float64(time.Millisecond))
			}
		}
		slices.Sort(lat)
		return lat[len(lat)/2], nil
	}
	for range s.cfg.Runs {
		off, err := phase(false)
		if err != nil {
			return err
		}
		on, err := phase(true)
		if err != nil {
			return err
		}
		logf("pod create: median %.2f ms without keyhook, %.2f ms with", off, on)
		without.runs = append(without.runs, off)
		with.runs = append(with.runs, on)
		added.runs = append(added.runs, on-off)
	}
	added.note = fmt.Sprintf("%d sequential creates per phase and run", s.cfg.PodCreates)
	// Pods stay Pending without a kubelet; remove them so later steps list less.
	return pods.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
}
