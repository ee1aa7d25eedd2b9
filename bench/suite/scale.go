package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// scale is `make bench-scale`: ScaleSecrets unrelated Secrets and
// ScaleConfigMaps ConfigMaps in the cluster (the rollouts' cache follows
// every one, without its data), ScaleExternalSecrets ExternalSecrets over ScaleKeys Vault secrets
// created while no reconciler runs; then a fresh reconciler's initial sync,
// its provider reads and its peak RSS.
func (s *suite) scale(ctx context.Context) error {
	e := s.env
	if err := e.stopReconciler(); err != nil {
		return err
	}
	if err := s.dropTenant(ctx); err != nil {
		return err
	}
	nsCount := s.cfg.ScaleNamespaces
	start := time.Now()
	filler := strings.Repeat("x", 200)
	for i := range nsCount {
		ns, err := e.cluster.Namespace(ctx, "bench-noise", nil)
		if err != nil {
			return err
		}
		secrets := e.clientset.CoreV1().Secrets(ns)
		if err := parallel(ctx, 32, share(s.cfg.ScaleSecrets, nsCount, i), func(j int) error {
			_, err := secrets.Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("noise-%05d", j), Labels: map[string]string{"app": "noise"}},
				Data:       map[string][]byte{"config": []byte(filler)},
			}, metav1.CreateOptions{})
			return err
		}); err != nil {
			return err
		}
		configMaps := e.clientset.CoreV1().ConfigMaps(ns)
		if err := parallel(ctx, 32, share(s.cfg.ScaleConfigMaps, nsCount, i), func(j int) error {
			_, err := configMaps.Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("noise-%05d", j), Labels: map[string]string{"app": "noise"}},
				Data:       map[string]string{"config": filler},
			}, metav1.CreateOptions{})
			return err
		}); err != nil {
			return err
		}
	}
	logf("%d unrelated Secrets and %d ConfigMaps created in %s", s.cfg.ScaleSecrets, s.cfg.ScaleConfigMaps, time.Since(start).Round(time.Second))
	start = time.Now()
	set, err := s.makeSyncSet(ctx, "bench-scale", nsCount, s.cfg.ScaleExternalSecrets/nsCount, s.cfg.ScaleKeys/nsCount, time.Hour)
	if err != nil {
		return err
	}
	n, keys := set.total(), set.keysPerNS*nsCount
	logf("%d ExternalSecrets over %d Vault secrets created in %s", n, keys, time.Since(start).Round(time.Second))

	initial := s.add(&figure{name: fmt.Sprintf("scale: initial sync of %d ExternalSecrets (%d Vault keys), start → all Ready", n, keys), unit: "s", target: atMost(60)})
	reads := s.add(&figure{name: "scale: provider reads in that initial sync", unit: "reads", target: atMost(float64(keys))})
	rss := s.add(&figure{name: fmt.Sprintf("scale: reconciler peak RSS (VmHWM) with %d ExternalSecrets, %d other Secrets and %d ConfigMaps", n, s.cfg.ScaleSecrets, s.cfg.ScaleConfigMaps), unit: "MiB", target: atMost(150)})
	start = time.Now()
	rec, err := e.startReconciler(ctx)
	if err != nil {
		return err
	}
	if err := s.waitReady(ctx, set, 30*time.Minute); err != nil {
		return fmt.Errorf("initial sync: %w", err)
	}
	d := time.Since(start)
	c, err := s.counters(rec.MetricsURL)
	if err != nil {
		return err
	}
	// Let the informers and the work queue settle before the last reading.
	time.Sleep(10 * time.Second)
	hwm, err := memStatus(rec.Proc.Pid(), "VmHWM")
	if err != nil {
		return err
	}
	logf("scale: initial sync of %d in %s, %.0f reads, %.0f logins, %.0f writes, VmHWM %.1f MiB; at the end: %s", n, d.Round(time.Millisecond), c.reads, c.logins, c.writes, hwm, c.process())
	if settled, err := s.counters(rec.MetricsURL); err == nil {
		s.notef("scale: reconciler at the end of the initial sync: %s; 10s later: %s", c.process(), settled.process())
	}
	initial.runs = []float64{d.Seconds()}
	reads.runs = []float64{c.reads}
	rss.runs = []float64{hwm}
	initial.note, rss.note = "one run", "one run"
	if s.cfg.ProfileDir != "" {
		return s.profileScale(ctx)
	}
	return nil
}

// share is the i-th of n near-equal parts of total: the first total%n parts
// one more.
func share(total, n, i int) int {
	if i < total%n {
		return total/n + 1
	}
	return total / n
}
