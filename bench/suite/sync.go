package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/bench/fixture"
	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/tests/framework"
)

// syncSet is a set of ExternalSecrets in namespaces: n of them reading keys
// distinct Vault secrets, round-robin.
type syncSet struct {
	namespaces []string
	perNS      int
	keysPerNS  int
	refresh    time.Duration
}

func (set syncSet) total() int { return len(set.namespaces) * set.perNS }

// makeSyncSet creates nsCount tenants with perNS ExternalSecrets each over
// keysPerNS Vault secrets, and a Deployment per namespace that follows (by
// keyhook.dev/rollout: auto) the Secrets of its first ten ExternalSecrets.
func (s *suite) makeSyncSet(ctx context.Context, prefix string, nsCount, perNS, keysPerNS int, refresh time.Duration) (syncSet, error) {
	e := s.env
	set := syncSet{perNS: perNS, keysPerNS: keysPerNS, refresh: refresh}
	for range nsCount {
		ns, err := e.tenant(ctx, prefix)
		if err != nil {
			return set, err
		}
		set.namespaces = append(set.namespaces, ns)
		if err := parallel(ctx, 8, keysPerNS, func(j int) error {
			return e.vault.Put(ctx, fmt.Sprintf("%s/k-%04d", ns, j), map[string]any{"a": fmt.Sprintf("value-a-%d", j), "b": fmt.Sprintf("value-b-%d", j)})
		}); err != nil {
			return set, err
		}
		if err := parallel(ctx, 16, perNS, func(i int) error {
			key := fmt.Sprintf("%s/k-%04d", ns, i%keysPerNS)
			es := fixture.ExternalSecret(ns, fmt.Sprintf("es-%05d", i), v1alpha1.ExternalSecretSpec{
				SecretStoreRef:  v1alpha1.SecretStoreRef{Name: fixture.StoreName, Kind: v1alpha1.SecretStoreKindNamespaced},
				RefreshInterval: &metav1.Duration{Duration: refresh},
				Data: []v1alpha1.ExternalSecretData{
					{SecretKey: "a", RemoteRef: v1alpha1.RemoteRef{Key: key, Property: "a"}},
					{SecretKey: "b", RemoteRef: v1alpha1.RemoteRef{Key: key, Property: "b"}},
				},
			})
			return e.client.Create(ctx, es)
		}); err != nil {
			return set, err
		}
		var envFrom []corev1.EnvFromSource
		for i := range min(10, perNS) {
			envFrom = append(envFrom, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: fmt.Sprintf("es-%05d", i)}}})
		}
		labels := map[string]string{"app": "follower"}
		if err := e.client.Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "follower", Annotations: map[string]string{annotations.Rollout: annotations.RolloutAuto}},
			Spec: appsv1.DeploymentSpec{
				Replicas: new(int32),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1", EnvFrom: envFrom}}},
				},
			},
		}); err != nil {
			return set, err
		}
	}
	return set, nil
}

// readiness counts the ExternalSecrets of set that are Ready.
func (s *suite) readiness(ctx context.Context, set syncSet) (ready int, err error) {
	for _, ns := range set.namespaces {
		cont := ""
		for {
			list := &v1alpha1.ExternalSecretList{}
			if err := s.env.client.List(ctx, list, client.InNamespace(ns), client.Limit(2000), client.Continue(cont)); err != nil {
				return 0, err
			}
			for i := range list.Items {
				if meta.IsStatusConditionTrue(list.Items[i].Status.Conditions, v1alpha1.ConditionReady) {
					ready++
				}
			}
			if cont = list.Continue; cont == "" {
				break
			}
		}
	}
	return ready, nil
}

// syncedMetric is the controller's gauge of when a sync of an
// ExternalSecret last succeeded (set after any write the sync makes): the
// status is not written by a refresh that changes nothing.
const syncedMetric = "keyhook_externalsecret_last_sync_success_timestamp_seconds"

// refreshedSince counts the ExternalSecrets of set that the controller whose
// metrics are m has synced successfully after since.
func (set syncSet) refreshedSince(m metrics, since time.Time) int {
	in := map[string]bool{}
	for _, ns := range set.namespaces {
		in[`namespace="`+ns+`"`] = true
	}
	n := 0
	for _, line := range strings.Split(string(m), "\n") {
		rest, ok := strings.CutPrefix(line, syncedMetric+"{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		matched := false
		for _, l := range strings.Split(labels, ",") {
			matched = matched || in[l]
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil && matched && v > float64(since.UnixNano())/1e9 {
			n++
		}
	}
	return n
}

// waitRefreshed waits until the controller serving metrics at url has
// synced every ExternalSecret of set after since.
func (s *suite) waitRefreshed(ctx context.Context, set syncSet, url string, since time.Time, timeout time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return framework.WaitFor(wctx, 500*time.Millisecond, func() (bool, error) {
		m, err := scrape(url)
		return err == nil && set.refreshedSince(m, since) == set.total(), err
	})
}

// waitReady waits until every ExternalSecret of set is Ready.
func (s *suite) waitReady(ctx context.Context, set syncSet, timeout time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	every := 200 * time.Millisecond
	if set.total() > 1000 {
		every = time.Second
	}
	last := time.Now()
	return framework.WaitFor(wctx, every, func() (bool, error) {
		ready, err := s.readiness(wctx, set)
		if time.Since(last) > 10*time.Second {
			logf("  %d/%d ExternalSecrets Ready", ready, set.total())
			last = time.Now()
		}
		return err == nil && ready == set.total(), err
	})
}

// counters are the reconciler's counters that the sync benchmarks read.
type counters struct {
	reads, logins, writes, rollouts float64
	statusWrites                    float64 // of ExternalSecrets' status
	failed                          float64 // provider calls that did not succeed
	// Of the process, at the scrape.
	goroutines, fds, heapMiB float64
}

func (s *suite) counters(url string) (counters, error) {
	m, err := scrape(url)
	if err != nil {
		return counters{}, err
	}
	return counters{
		reads:        m.sum("keyhook_provider_calls_total", `call="get_secret"`),
		logins:       m.sum("keyhook_provider_calls_total", `call="login"`),
		writes:       m.sum("keyhook_secret_writes_total"),
		rollouts:     m.sum("keyhook_rollouts_total"),
		statusWrites: m.sum("keyhook_externalsecret_status_writes_total"),
		failed:       m.sum("keyhook_provider_calls_total") - m.sum("keyhook_provider_calls_total", `status="success"`),

		goroutines: m.sum("go_goroutines"),
		fds:        m.sum("process_open_fds"),
		heapMiB:    m.sum("go_memstats_heap_inuse_bytes") / (1 << 20),
	}, nil
}

func (c counters) minus(o counters) counters {
	return counters{c.reads - o.reads, c.logins - o.logins, c.writes - o.writes, c.rollouts - o.rollouts, c.statusWrites - o.statusWrites, c.failed - o.failed, c.goroutines, c.fds, c.heapMiB}
}

// apiWrites is the API server's count of the write requests it served on
// Secrets and ExternalSecrets (status included), whoever made them:
// apiserver_request_total.
func (s *suite) apiWrites(ctx context.Context) (float64, error) {
	raw, err := s.env.clientset.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, fmt.Errorf("the API server's metrics: %w", err)
	}
	m := metrics(raw)
	total := 0.0
	for _, resource := range []string{"secrets", "externalsecrets"} {
		for _, verb := range []string{"POST", "PUT", "PATCH", "DELETE", "APPLY"} {
			total += m.sum("apiserver_request_total", `resource="`+resource+`"`, `verb="`+verb+`"`)
		}
	}
	return total, nil
}

// sync measures the reconciler: the initial sync of SyncExternalSecrets by a
// freshly started reconciler, Runs times in new namespaces; then, on the
// last set, refresh cycles in which nothing changed remotely.
func (s *suite) sync(ctx context.Context) error {
	e := s.env
	// Only the ExternalSecrets of this step may exist, so that the
	// reconciler's counters are this step's.
	if err := s.dropTenant(ctx); err != nil {
		return err
	}
	n := s.cfg.SyncExternalSecrets
	initial := s.add(&figure{name: fmt.Sprintf("reconciler: initial sync of %d ExternalSecrets (%d Vault keys), start → all Ready", n, s.cfg.SyncKeys), unit: "s"})
	initialReads := s.add(&figure{name: "reconciler: provider reads in that initial sync", unit: "reads", target: atMost(float64(s.cfg.SyncKeys))})
	cycleAPIWrites := s.add(&figure{name: fmt.Sprintf("steady state: API writes per refresh cycle (nothing changed, %d ExternalSecrets): Secrets and ExternalSecrets, status included, as the API server counts them (apiserver_request_total)", n), unit: "", target: atMost(0)})
	cycleWrites := s.add(&figure{name: "steady state: Secret writes per refresh cycle (keyhook_secret_writes_total)", unit: "", target: atMost(0)})
	cycleStatusWrites := s.add(&figure{name: "steady state: ExternalSecret status writes per refresh cycle (keyhook_externalsecret_status_writes_total)", unit: "", target: atMost(0)})
	cycleRollouts := s.add(&figure{name: "steady state: rollouts per refresh cycle", unit: "", target: atMost(0)})
	cycleReads := s.add(&figure{name: "steady state: provider reads per refresh cycle", unit: "reads", target: atMost(float64(s.cfg.SyncKeys))})
	cycleLogins := s.add(&figure{name: "steady state: provider logins per refresh cycle", unit: "logins"})
	rss := s.add(&figure{name: fmt.Sprintf("reconciler peak RSS (VmHWM) after the initial sync of %d", n), unit: "MiB"})

	var set syncSet
	for r := range s.cfg.Runs {
		if err := e.stopReconciler(); err != nil {
			return err
		}
		if r > 0 {
			// Only this run's ExternalSecrets exist when the reconciler starts.
			if err := e.deleteNamespace(ctx, set.namespaces[0]); err != nil {
				return err
			}
		}
		var err error
		if set, err = s.makeSyncSet(ctx, "bench-sync", 1, n, s.cfg.SyncKeys, s.cfg.RefreshInterval); err != nil {
			return err
		}
		start := time.Now()
		rec, err := e.startReconciler(ctx)
		if err != nil {
			return err
		}
		if err := s.waitReady(ctx, set, 5*time.Minute); err != nil {
			return fmt.Errorf("initial sync: %w", err)
		}
		d := time.Since(start)
		c, err := s.counters(rec.MetricsURL)
		if err != nil {
			return err
		}
		hwm, err := memStatus(rec.Proc.Pid(), "VmHWM")
		if err != nil {
			return err
		}
		logf("initial sync of %d: %s, %.0f reads, %.0f logins (%.0f provider calls failed), %.0f writes, VmHWM %.1f MiB; %s", n, d.Round(time.Millisecond), c.reads, c.logins, c.failed, c.writes, hwm, c.process())
		initial.runs = append(initial.runs, d.Seconds())
		initialReads.runs = append(initialReads.runs, c.reads)
		rss.runs = append(rss.runs, hwm)
	}

	// Steady state on the last set: each cycle ends when every
	// ExternalSecret has been synced again since the cycle began.
	rec := e.reconciler
	ns := set.namespaces[0]
	deploy := &appsv1.Deployment{}
	if err := e.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "follower"}, deploy); err != nil {
		return err
	}
	generation := deploy.Generation
	for range s.cfg.Runs {
		mark := time.Now()
		before, err := s.counters(rec.MetricsURL)
		if err != nil {
			return err
		}
		apiBefore, err := s.apiWrites(ctx)
		if err != nil {
			return err
		}
		if err := s.waitRefreshed(ctx, set, rec.MetricsURL, mark, 3*s.cfg.RefreshInterval+time.Minute); err != nil {
			return fmt.Errorf("refresh cycle: %w", err)
		}
		after, err := s.counters(rec.MetricsURL)
		if err != nil {
			return err
		}
		apiAfter, err := s.apiWrites(ctx)
		if err != nil {
			return err
		}
		d := after.minus(before)
		logf("refresh cycle of %d in %s: %.0f reads, %.0f logins, %.0f Secret writes, %.0f status writes, %.0f API writes, %.0f rollouts", n, time.Since(mark).Round(time.Millisecond), d.reads, d.logins, d.writes, d.statusWrites, apiAfter-apiBefore, d.rollouts)
		cycleAPIWrites.runs = append(cycleAPIWrites.runs, apiAfter-apiBefore)
		cycleWrites.runs = append(cycleWrites.runs, d.writes)
		cycleStatusWrites.runs = append(cycleStatusWrites.runs, d.statusWrites)
		cycleRollouts.runs = append(cycleRollouts.runs, d.rollouts)
		cycleReads.runs = append(cycleReads.runs, d.reads)
		cycleLogins.runs = append(cycleLogins.runs, d.logins)
	}
	// A rollout waits out the storm guard (--rollout-debounce, 10s): give
	// one that the last cycle would have caused the time to happen.
	first, err := s.counters(rec.MetricsURL)
	if err != nil {
		return err
	}
	time.Sleep(11 * time.Second)
	last, err := s.counters(rec.MetricsURL)
	if err != nil {
		return err
	}
	if d := last.minus(first); d.rollouts != 0 || d.writes != 0 {
		s.notef("after the last refresh cycle: %.0f more Secret writes, %.0f more rollouts", d.writes, d.rollouts)
	}
	if err := e.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "follower"}, deploy); err != nil {
		return err
	}
	if deploy.Generation != generation {
		s.notef("the Deployment following the steady-state Secrets changed generation %d → %d during the refresh cycles", generation, deploy.Generation)
	}
	cycleAPIWrites.note = fmt.Sprintf("refreshInterval %s", s.cfg.RefreshInterval)
	if err := e.stopReconciler(); err != nil {
		return err
	}
	return e.deleteNamespace(ctx, ns)
}

// parallel runs fn(0..n-1) on workers goroutines and returns the first error.
func parallel(ctx context.Context, workers, n int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  int
	)
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := first != nil || i >= n || ctx.Err() != nil
				mu.Unlock()
				if stop {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// dropTenant deletes the fixture's namespace, if made, so that a reconciler
// started next counts only the ExternalSecrets of its own step.
func (s *suite) dropTenant(ctx context.Context) error {
	if s.tenantNS == "" {
		return nil
	}
	if err := s.env.deleteNamespace(ctx, s.tenantNS); err != nil {
		return err
	}
	s.tenantNS = ""
	return nil
}

func (c counters) process() string {
	return fmt.Sprintf("%.0f goroutines, %.0f open fds, heap in use %.1f MiB", c.goroutines, c.fds, c.heapMiB)
}
