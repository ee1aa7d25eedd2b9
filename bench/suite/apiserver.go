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
	apiCall := s.add(&figure{name: "API server's call of the keyhook webhook, mean as the API server times it (apiserver_admission_webhook_admission_duration_seconds)", unit: "ms"})
	handler := s.add(&figure{name: "webhook's handling of those calls, mean as the webhook times it (controller_runtime_webhook_latency_seconds)", unit: "ms"})
	pods := e.clientset.CoreV1().Pods(ns)
	apiMetrics := func() (metrics, error) {
		b, err := e.clientset.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
		return metrics(b), err
	}
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
		apiBefore, err := apiMetrics()
		if err != nil {
			return err
		}
		whBefore, err := scrape(e.webhook.MetricsURL)
		if err != nil {
			return err
		}
		on, err := phase(true)
		if err != nil {
			return err
		}
		apiAfter, err := apiMetrics()
		if err != nil {
			return err
		}
		whAfter, err := scrape(e.webhook.MetricsURL)
		if err != nil {
			return err
		}
		const apiName, hook = "apiserver_admission_webhook_admission_duration_seconds", `name="pods.keyhook.dev"`
		if n := apiAfter.sum(apiName+"_count", hook) - apiBefore.sum(apiName+"_count", hook); n > 0 {
			apiCall.runs = append(apiCall.runs, 1000*(apiAfter.sum(apiName+"_sum", hook)-apiBefore.sum(apiName+"_sum", hook))/n)
		}
		const whName, path = "controller_runtime_webhook_latency_seconds", `webhook="/mutate-v1-pod"`
		if n := whAfter.sum(whName+"_count", path) - whBefore.sum(whName+"_count", path); n > 0 {
			handler.runs = append(handler.runs, 1000*(whAfter.sum(whName+"_sum", path)-whBefore.sum(whName+"_sum", path))/n)
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
