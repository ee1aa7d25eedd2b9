package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/bench/fixture"
	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/tests/framework"
)

// defaultProbeInterval is the controller's --version-probe-interval, which
// this step runs with (the default).
const defaultProbeInterval = 15 * time.Second

// rolloutSettle is how long a rollout may take to happen after a change
// with the controller's defaults: --rollout-debounce (10 s) and a margin.
const rolloutSettle = 13 * time.Second

// rolloutSet is the rollout step's fixture: in one namespace, n Vault keys,
// an ExternalSecret (refreshInterval 1h) per key and a Deployment
// following its Secret (keyhook.dev/rollout: auto), all named r-<i>.
type rolloutSet struct {
	ns string
	n  int
}

func (set rolloutSet) name(i int) string { return fmt.Sprintf("r-%02d", i) }
func (set rolloutSet) key(i int) string  { return set.ns + "/" + set.name(i) }

// rollout measures what a user of rollouts sees, with the controller's
// default flags against the real Vault: how soon a value written to Vault
// rolls the Deployments using it with refreshInterval 1h (the version
// probes see it), that nothing is read while nothing changes, how soon a
// changed Secret rolls its Deployment, and that a burst of changes rolls
// it once.
func (s *suite) rollout(ctx context.Context) error {
	e := s.env
	if err := s.dropTenant(ctx); err != nil {
		return err
	}
	ns, err := e.tenant(ctx, "bench-rollout")
	if err != nil {
		return err
	}
	set := rolloutSet{ns: ns, n: s.cfg.RolloutKeys}
	writes := s.cfg.RolloutRounds * set.n
	rotation := s.add(&figure{name: fmt.Sprintf("value write in Vault → new ReplicaSet, refreshInterval 1h (p95 over %d writes)", writes), unit: "s", target: atMost(15)})
	rotationMedian := s.add(&figure{name: "value write in Vault → new ReplicaSet, refreshInterval 1h (median of those writes)", unit: "s"})
	quietReads := s.add(&figure{name: "value reads per hour with nothing changing (version probes only)", unit: "reads", target: atMost(0)})
	quietProbes := s.add(&figure{name: "version probes per key and probe interval meanwhile", unit: "probes"})
	isolated := s.add(&figure{name: "isolated change → new ReplicaSet, after the Secret changes", unit: "s", target: atMost(3)})
	burst := s.add(&figure{name: "20 changes in 5 s → rollouts of the Deployment", unit: "rollouts", target: exactly(1)})

	if err := s.makeRolloutSet(ctx, set); err != nil {
		return err
	}
	rec, err := e.startReconciler(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = e.stopReconciler() }()
	if err := s.waitRolloutSet(ctx, set); err != nil {
		return err
	}

	// Nothing changes for a few probe intervals: count value reads and probes.
	window := time.Duration(s.cfg.QuietIntervals) * defaultProbeInterval
	before, err := scrape(rec.MetricsURL)
	if err != nil {
		return err
	}
	time.Sleep(window)
	after, err := scrape(rec.MetricsURL)
	if err != nil {
		return err
	}
	reads := after.sum("keyhook_provider_calls_total", `call="get_secret"`) - before.sum("keyhook_provider_calls_total", `call="get_secret"`)
	probes := after.sum("keyhook_provider_calls_total", `call="current_version"`) - before.sum("keyhook_provider_calls_total", `call="current_version"`)
	logf("nothing changing for %s: %.0f value reads, %.0f version probes of %d keys", window, reads, probes, set.n)
	quietReads.runs = append(quietReads.runs, reads*float64(time.Hour)/float64(window))
	quietReads.note = fmt.Sprintf("%.0f reads in %s (%d probe intervals of %s, %.0f version probes of %d keys), times 3600 s / %s; the hourly refresh itself (one read per key) is not in it",
		reads, window, s.cfg.QuietIntervals, defaultProbeInterval, probes, set.n, window)
	quietProbes.runs = append(quietProbes.runs, probes/float64(set.n)/float64(s.cfg.QuietIntervals))

	// Rotation: every key written at once, each Deployment timed on its own
	// (the probes of the keys are spread over the interval: each write
	// lands at its own point of its key's probe cycle).
	var latencies []float64
	for round := range s.cfg.RolloutRounds {
		l, err := s.rotateAll(ctx, set, round)
		if err != nil {
			return fmt.Errorf("rotation round %d: %w", round, err)
		}
		latencies = append(latencies, l...)
		time.Sleep(rolloutSettle) // nothing of this round rolls into the next
	}
	slices.Sort(latencies)
	logf("write → new ReplicaSet over %d writes: %v", len(latencies), roundAll(latencies))
	rotation.runs = append(rotation.runs, percentile(latencies, 0.95))
	rotation.note = fmt.Sprintf("--version-probe-interval %s (default), --rollout-quiet-period 2s; min %s, max %s", defaultProbeInterval, format(latencies[0]), format(latencies[len(latencies)-1]))
	rotationMedian.runs = append(rotationMedian.runs, percentile(latencies, 0.5))

	// An isolated change: the sync sees it at once (force-sync); timed from
	// the Secret's change to the new ReplicaSet.
	for r := range s.cfg.Runs {
		d, err := s.isolatedChange(ctx, set, 0, r)
		if err != nil {
			return fmt.Errorf("isolated change: %w", err)
		}
		isolated.runs = append(isolated.runs, d.Seconds())
		time.Sleep(rolloutSettle)
	}
	isolated.note = "--rollout-quiet-period 2s (default)"

	// A burst: 20 changes in 5 s, each synced at once, one Deployment per run.
	for r := range s.cfg.Runs {
		n, err := s.burstChanges(ctx, set, 1+r%(set.n-1))
		if err != nil {
			return fmt.Errorf("burst: %w", err)
		}
		burst.runs = append(burst.runs, float64(n))
	}
	burst.note = "new ReplicaSets 13 s after the last change (--rollout-debounce 10s)"
	return e.deleteNamespace(ctx, ns)
}

func (s *suite) makeRolloutSet(ctx context.Context, set rolloutSet) error {
	e := s.env
	return parallel(ctx, 4, set.n, func(i int) error {
		if err := e.vault.Put(ctx, set.key(i), map[string]any{"v": "0"}); err != nil {
			return err
		}
		es := fixture.ExternalSecret(set.ns, set.name(i), v1alpha1.ExternalSecretSpec{
			SecretStoreRef:  v1alpha1.SecretStoreRef{Name: fixture.StoreName, Kind: v1alpha1.SecretStoreKindNamespaced},
			RefreshInterval: &metav1.Duration{Duration: time.Hour},
			Data:            []v1alpha1.ExternalSecretData{{SecretKey: "v", RemoteRef: v1alpha1.RemoteRef{Key: set.key(i), Property: "v"}}},
		})
		if err := e.client.Create(ctx, es); err != nil {
			return err
		}
		labels := map[string]string{"app": set.name(i)}
		return e.client.Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: set.ns, Name: set.name(i), Annotations: map[string]string{annotations.Rollout: annotations.RolloutAuto}},
			Spec: appsv1.DeploymentSpec{
				Replicas: new(int32), // no pods: a rollout is done once its ReplicaSet exists
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1", EnvFrom: []corev1.EnvFromSource{
						{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: set.name(i)}}},
					}}}},
				},
			},
		})
	})
}

// waitRolloutSet waits until every ExternalSecret is Ready and every
// Deployment has its first ReplicaSet and has recorded its Secret's version
// (so that the next change is a change).
func (s *suite) waitRolloutSet(ctx context.Context, set rolloutSet) error {
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return framework.WaitFor(wctx, 200*time.Millisecond, func() (bool, error) {
		ess := &v1alpha1.ExternalSecretList{}
		if err := s.env.client.List(wctx, ess, client.InNamespace(set.ns)); err != nil {
			return false, err
		}
		ready := 0
		for i := range ess.Items {
			if meta.IsStatusConditionTrue(ess.Items[i].Status.Conditions, v1alpha1.ConditionReady) {
				ready++
			}
		}
		ds := &appsv1.DeploymentList{}
		if err := s.env.client.List(wctx, ds, client.InNamespace(set.ns)); err != nil {
			return false, err
		}
		recorded := 0
		for _, d := range ds.Items {
			if strings.Contains(d.Annotations[annotations.SecretVersions], `"secret/`+d.Name+`"`) {
				recorded++
			}
		}
		rs, err := s.replicaSets(wctx, set.ns)
		if err != nil {
			return false, err
		}
		return ready == set.n && recorded == set.n && len(rs) == set.n, nil
	})
}

// replicaSets counts the ReplicaSets of each Deployment of ns.
func (s *suite) replicaSets(ctx context.Context, ns string) (map[string]int, error) {
	list := &appsv1.ReplicaSetList{}
	if err := s.env.client.List(ctx, list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, rs := range list.Items {
		for _, o := range rs.OwnerReferences {
			if o.Kind == "Deployment" {
				out[o.Name]++
			}
		}
	}
	return out, nil
}

// rotateAll writes a new value to every key and returns, per key, the
// seconds from its write until its Deployment has a new ReplicaSet.
func (s *suite) rotateAll(ctx context.Context, set rolloutSet, round int) ([]float64, error) {
	base, err := s.replicaSets(ctx, set.ns)
	if err != nil {
		return nil, err
	}
	written := make([]time.Time, set.n)
	var mu sync.Mutex
	if err := parallel(ctx, 4, set.n, func(i int) error {
		err := s.env.vault.Put(ctx, set.key(i), map[string]any{"v": "rotated-" + strconv.Itoa(round)})
		mu.Lock()
		written[i] = time.Now()
		mu.Unlock()
		return err
	}); err != nil {
		return nil, err
	}
	seen := map[int]float64{}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute+2*defaultProbeInterval)
	defer cancel()
	err = framework.WaitFor(wctx, 100*time.Millisecond, func() (bool, error) {
		rs, err := s.replicaSets(wctx, set.ns)
		if err != nil {
			return false, err
		}
		now := time.Now()
		for i := range set.n {
			if _, ok := seen[i]; !ok && rs[set.name(i)] > base[set.name(i)] {
				seen[i] = now.Sub(written[i]).Seconds()
			}
		}
		return len(seen) == set.n, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%d of %d Deployments rolled: %w", len(seen), set.n, err)
	}
	out := make([]float64, 0, set.n)
	for _, v := range seen {
		out = append(out, v)
	}
	return out, nil
}

// forceSync has the sync read ExternalSecret name at once.
func (s *suite) forceSync(ctx context.Context, ns, name string) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, annotations.ForceSync, strconv.FormatInt(time.Now().UnixNano(), 10))
	es := &v1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	return s.env.client.Patch(ctx, es, client.RawPatch(types.MergePatchType, []byte(patch)))
}

// isolatedChange writes key i, has it synced at once, and returns the time
// from its Secret's change to its Deployment's new ReplicaSet.
func (s *suite) isolatedChange(ctx context.Context, set rolloutSet, i, run int) (time.Duration, error) {
	name := set.name(i)
	base, err := s.replicaSets(ctx, set.ns)
	if err != nil {
		return 0, err
	}
	sec := &corev1.Secret{}
	if err := s.env.client.Get(ctx, client.ObjectKey{Namespace: set.ns, Name: name}, sec); err != nil {
		return 0, err
	}
	hash := sec.Annotations[annotations.DataHash]
	if err := s.env.vault.Put(ctx, set.key(i), map[string]any{"v": "isolated-" + strconv.Itoa(run)}); err != nil {
		return 0, err
	}
	if err := s.forceSync(ctx, set.ns, name); err != nil {
		return 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var changed, rolled time.Time
	err = framework.WaitFor(wctx, 20*time.Millisecond, func() (bool, error) {
		now := time.Now()
		if changed.IsZero() {
			if err := s.env.client.Get(wctx, client.ObjectKey{Namespace: set.ns, Name: name}, sec); err != nil {
				return false, err
			}
			if sec.Annotations[annotations.DataHash] != hash {
				changed = now
			}
		}
		rs, err := s.replicaSets(wctx, set.ns)
		if err != nil {
			return false, err
		}
		if rs[name] > base[name] {
			rolled = now
		}
		return !changed.IsZero() && !rolled.IsZero(), nil
	})
	if err != nil {
		return 0, fmt.Errorf("Secret changed: %t, Deployment rolled: %t: %w", !changed.IsZero(), !rolled.IsZero(), err)
	}
	d := rolled.Sub(changed)
	logf("isolated change: Secret changed → new ReplicaSet in %s", d.Round(time.Millisecond))
	return d, nil
}

// burstChanges writes key i 20 times in 5 s, each synced at once, and
// counts the Deployment's new ReplicaSets once the storm guard is over.
func (s *suite) burstChanges(ctx context.Context, set rolloutSet, i int) (int, error) {
	name := set.name(i)
	base, err := s.replicaSets(ctx, set.ns)
	if err != nil {
		return 0, err
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for c := range 20 {
		if err := s.env.vault.Put(ctx, set.key(i), map[string]any{"v": fmt.Sprintf("burst-%d-%d", time.Now().UnixNano(), c)}); err != nil {
			return 0, err
		}
		if err := s.forceSync(ctx, set.ns, name); err != nil {
			return 0, err
		}
		<-tick.C
	}
	time.Sleep(rolloutSettle)
	rs, err := s.replicaSets(ctx, set.ns)
	if err != nil {
		return 0, err
	}
	n := rs[name] - base[name]
	logf("burst of 20 changes in 5 s: %d new ReplicaSets of %s", n, name)
	return n, nil
}

// percentile is the p-th percentile of sorted values (nearest rank).
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func roundAll(v []float64) []string {
	out := make([]string, len(v))
	for i, x := range v {
		out[i] = format(x)
	}
	return out
}
