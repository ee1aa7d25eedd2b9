package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/tests/framework"
)

// refreshMetric is the controller's gauge of when it last read an
// ExternalSecret's remote data.
const refreshMetric = "keyhook_externalsecret_last_refresh_timestamp_seconds"

// metricTime is the value of the controller's gauge name for the
// ExternalSecret ns/name as a time; ok is false when there is no such series.
func metricTime(t *testing.T, name, ns, es string) (at time.Time, ok bool) {
	t.Helper()
	re := regexp.MustCompile(fmt.Sprintf(`(?m)^%s\{name=%q,namespace=%q\} (\S+)$`, regexp.QuoteMeta(name), es, ns))
	m := re.FindStringSubmatch(scrape(t, controller.MetricsURL))
	if m == nil {
		return time.Time{}, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("%s of %s/%s: %v", name, ns, es, err)
	}
	return time.Unix(0, int64(v*1e9)), true
}

// lastRefresh is when the controller last read the ExternalSecret ns/name,
// by its metric; the status's refreshTime does not move on refreshes that
// change nothing.
func lastRefresh(t *testing.T, ns, name string) time.Time {
	t.Helper()
	at, ok := metricTime(t, refreshMetric, ns, name)
	if !ok {
		t.Fatalf("the controller exports no %s for %s/%s", refreshMetric, ns, name)
	}
	return at
}

// waitRefreshedAfter waits until the controller has read the ExternalSecret
// ns/name after since, and returns when it did.
func waitRefreshedAfter(ctx context.Context, t *testing.T, ns, name string, since time.Time) time.Time {
	t.Helper()
	var at time.Time
	err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		var ok bool
		at, ok = metricTime(t, refreshMetric, ns, name)
		return ok && at.After(since), nil
	})
	if err != nil {
		t.Fatalf("ExternalSecret %s/%s was not refreshed after %s (last refresh %s): %v", ns, name, since.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano), err)
	}
	return at
}

// TestRefreshWritesNothing: refreshes that find nothing changed write
// nothing to the API server — neither the Secret nor the ExternalSecrets'
// status (watched: no event, no new resourceVersion) — while the
// controller's last-refresh metric advances with every refresh. A real change
// still reaches the Secret and the status, and a deleted ExternalSecret's
// series go.
func TestRefreshWritesNothing(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "refresh")
	v1, v2 := secretValue(t, "v1"), secretValue(t, "v2")
	if err := vault.Put(ctx, ns+"/db", map[string]any{"password": v1}); err != nil {
		t.Fatal(err)
	}
	const interval = time.Second
	for _, es := range []*v1alpha1.ExternalSecret{
		externalSecret(ns, "owned", v1alpha1.ExternalSecretSpec{
			RefreshInterval: &metav1.Duration{Duration: interval},
			Data:            []v1alpha1.ExternalSecretData{data("password", ns+"/db", "password", "")},
		}),
		// Tracks the remote version in its status, for injected pods.
		externalSecret(ns, "tracked", v1alpha1.ExternalSecretSpec{
			RefreshInterval: &metav1.Duration{Duration: interval},
			Target:          v1alpha1.ExternalSecretTarget{CreationPolicy: v1alpha1.CreationPolicyNone},
			Data:            []v1alpha1.ExternalSecretData{data("password", ns+"/db", "password", "")},
		}),
	} {
		if err := cluster.Client.Create(ctx, es); err != nil {
			t.Fatal(err)
		}
	}
	owned := waitForES(ctx, t, ns, "owned", "Ready", readyIs(metav1.ConditionTrue, "SecretSynced"))
	tracked := waitForES(ctx, t, ns, "tracked", "Ready", readyIs(metav1.ConditionTrue, "SecretSynced"))
	secret := waitForSecret(ctx, t, ns, "owned", func(s *corev1.Secret) bool { return string(s.Data["password"]) == v1 })
	if len(tracked.Status.Versions) == 0 {
		t.Fatalf("the tracking ExternalSecret records no versions: %+v", tracked.Status)
	}

	// From here on, every write to an ExternalSecret of ns is an event.
	list := &v1alpha1.ExternalSecretList{}
	if err := cluster.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	// The objects as the watch starts, the first sync's status write done.
	for i := range list.Items {
		switch es := &list.Items[i]; es.Name {
		case "owned":
			owned = es
		case "tracked":
			tracked = es
		}
	}
	wc, err := client.NewWithWatch(cluster.Config, client.Options{Scheme: cluster.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	w, err := wc.Watch(ctx, &v1alpha1.ExternalSecretList{}, client.InNamespace(ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var (
		mu     sync.Mutex
		writes []string
	)
	go func() {
		for ev := range w.ResultChan() {
			if ev.Type == watch.Bookmark {
				continue
			}
			// An error ends the watch: it counts, as it would hide writes.
			line := fmt.Sprintf("%s %+v", ev.Type, ev.Object)
			if es, ok := ev.Object.(*v1alpha1.ExternalSecret); ok {
				line = fmt.Sprintf("%s %s (resourceVersion %s, refreshTime %v)", ev.Type, es.Name, es.ResourceVersion, es.Status.RefreshTime)
			}
			mu.Lock()
			writes = append(writes, line)
			mu.Unlock()
		}
	}()

	// Several refresh intervals with nothing changed: the metric shows each
	// ExternalSecret read at least four more times.
	start := map[string]time.Time{}
	for _, name := range []string{"owned", "tracked"} {
		start[name] = lastRefresh(t, ns, name)
	}
	for _, name := range []string{"owned", "tracked"} {
		waitRefreshedAfter(ctx, t, ns, name, start[name].Add(4*interval-interval/2))
	}
	// Events after this are of the stop (the stream closed), not writes.
	mu.Lock()
	seen := writes
	mu.Unlock()
	w.Stop()
	if len(seen) > 0 {
		t.Errorf("refreshes with nothing changed wrote ExternalSecrets: %v", seen)
	}
	for _, before := range []*v1alpha1.ExternalSecret{owned, tracked} {
		now := &v1alpha1.ExternalSecret{}
		if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(before), now); err != nil {
			t.Fatal(err)
		}
		if now.ResourceVersion != before.ResourceVersion {
			t.Errorf("ExternalSecret %s: resourceVersion %s → %s with nothing changed", before.Name, before.ResourceVersion, now.ResourceVersion)
		}
	}
	again := &corev1.Secret{}
	if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(secret), again); err != nil {
		t.Fatal(err)
	}
	if again.ResourceVersion != secret.ResourceVersion {
		t.Errorf("refreshes with nothing changed rewrote the Secret: resourceVersion %s → %s", secret.ResourceVersion, again.ResourceVersion)
	}
	if success, ok := metricTime(t, "keyhook_externalsecret_last_sync_success_timestamp_seconds", ns, "owned"); !ok || success.Before(start["owned"].Add(3*interval)) {
		t.Errorf("last successful sync of owned: %s (series exported: %v), not after the refreshes since %s", success, ok, start["owned"])
	}

	// A real change: the Secret gets the new data, and both statuses record
	// the sync (a new refreshTime, new versions).
	if err := vault.Put(ctx, ns+"/db", map[string]any{"password": v2}); err != nil {
		t.Fatal(err)
	}
	waitForSecret(ctx, t, ns, "owned", func(s *corev1.Secret) bool { return string(s.Data["password"]) == v2 })
	waitForES(ctx, t, ns, "owned", "synced anew", func(e *v1alpha1.ExternalSecret) bool {
		return readyIs(metav1.ConditionTrue, "SecretSynced")(e) && e.Status.RefreshTime != nil && e.Status.RefreshTime.After(owned.Status.RefreshTime.Time)
	})
	waitForES(ctx, t, ns, "tracked", "at the new version", func(e *v1alpha1.ExternalSecret) bool {
		return readyIs(metav1.ConditionTrue, "SecretSynced")(e) && fmt.Sprint(e.Status.Versions) != fmt.Sprint(tracked.Status.Versions) &&
			e.Status.RefreshTime != nil && e.Status.RefreshTime.After(tracked.Status.RefreshTime.Time)
	})

	// A deleted ExternalSecret's series go.
	if err := cluster.Client.Delete(ctx, tracked); err != nil {
		t.Fatal(err)
	}
	err = framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		_, ok := metricTime(t, refreshMetric, ns, "tracked")
		return !ok, nil
	})
	if err != nil {
		t.Errorf("the deleted ExternalSecret's %s series is still exported: %v", refreshMetric, err)
	}
	if _, ok := metricTime(t, refreshMetric, ns, "owned"); !ok {
		t.Errorf("the series of the ExternalSecret left went too")
	}
	assertNoValues(ctx, t, ns, v1, v2)
}
