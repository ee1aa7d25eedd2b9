package secretsync

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/resolve"
)

// versioned is a secret manager with versions: it counts logins, version
// probes and value reads, by namespace and key.
type versioned struct {
	mu       sync.Mutex
	versions map[string]string // key → current version; missing: not found
	fail     error             // every call fails with it, when set
	logins   int
	probes   map[string]int // namespace/key → CurrentVersion calls
	reads    int
	closed   int
}

func newVersioned() *versioned {
	return &versioned{versions: map[string]string{}, probes: map[string]int{}}
}

func (v *versioned) set(key, version string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.versions[key] = version
}

func (v *versioned) factory(_ context.Context, src *resolve.Source) (fetch.Provider, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.logins++
	return &versionedProvider{v: v, ns: src.ExternalSecret.Namespace}, nil
}

type versionedProvider struct {
	v  *versioned
	ns string
}

func (p *versionedProvider) GetSecret(context.Context, fetch.Ref) ([]byte, error) {
	p.v.mu.Lock()
	defer p.v.mu.Unlock()
	p.v.reads++
	return []byte(`{"password":"not-a-real-value"}`), nil
}

func (p *versionedProvider) Find(context.Context, fetch.FindQuery) (map[string][]byte, error) {
	return nil, fetch.ErrNotSupported
}

func (p *versionedProvider) CurrentVersion(_ context.Context, key string) (string, error) {
	p.v.mu.Lock()
	defer p.v.mu.Unlock()
	p.v.probes[p.ns+"/"+key]++
	if p.v.fail != nil {
		return "", p.v.fail
	}
	ver, ok := p.v.versions[key]
	if !ok {
		return "", fmt.Errorf("%s: %w", key, fetch.ErrNotFound)
	}
	return ver, nil
}

func (p *versionedProvider) Close() error {
	p.v.mu.Lock()
	defer p.v.mu.Unlock()
	p.v.closed++
	return nil
}

func (v *versioned) totals() (probes, reads, logins int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, n := range v.probes {
		probes += n
	}
	return probes, v.reads, v.logins
}

const probeInterval = 15 * time.Second

// proberFixture is a prober over namespaces "a" and "b", each with a KV v2
// SecretStore "vault" permitting keys under app/ only, sharing sessions
// with a read cache as the controller wires them.
func proberFixture(t *testing.T) (*VersionProber, *versioned, *clocktesting.FakeClock) {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	b := fake.NewClientBuilder().WithScheme(scheme)
	for _, ns := range []string{"a", "b"} {
		b = b.WithObjects(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, &v1alpha1.SecretStore{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vault"},
			Spec: v1alpha1.SecretStoreSpec{
				PermittedKeys: []string{"app/.*"},
				Provider:      v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{Server: "https://vault"}},
			},
		})
	}
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	reads := NewReadCache(5*time.Minute, clk)
	reads.SessionTTL = 5 * time.Minute
	backend := newVersioned()
	p := NewVersionProber(probeInterval, clk)
	p.Resolver = &resolve.Resolver{Reader: b.Build()}
	p.Providers = backend.factory
	p.Reads = reads
	p.Workers = 2
	return p, backend, clk
}

var store = v1alpha1.SecretStoreRef{Name: "vault"}

func esName(ns, name string) types.NamespacedName {
	return types.NamespacedName{Namespace: ns, Name: name}
}

// cycle probes what is due over one whole interval, in steps, as Start
// would, and returns the ExternalSecrets whose sync was woken.
func cycle(t *testing.T, p *VersionProber, clk *clocktesting.FakeClock) []string {
	t.Helper()
	ctx := context.Background()
	end := clk.Now().Add(probeInterval)
	for clk.Now().Before(end) {
		p.ProbeDue(ctx)
		clk.Step(time.Second)
	}
	return woken(p)
}

func woken(p *VersionProber) []string {
	var out []string
	for {
		select {
		case e := <-p.changes:
			out = append(out, e.Object.GetNamespace()+"/"+e.Object.GetName())
		default:
			slices.Sort(out)
			return out
		}
	}
}

func TestVersionProbesAreSharedPerNamespaceStoreAndKey(t *testing.T) {
	p, backend, clk := proberFixture(t)
	// One probe at a time: two at once in one namespace may both log in
	// (the read cache keeps the later session), which this test would count.
	p.Workers = 1
	ctx := context.Background()
	backend.set("app/db", "1")
	backend.set("app/api", "7")
	for i := range 100 {
		p.Track(ctx, esName("a", fmt.Sprintf("es-%03d", i)), store, []string{"app/db"}, nil, Pending{})
	}
	p.Track(ctx, esName("a", "api"), store, []string{"app/api", "app/db"}, nil, Pending{})
	p.Track(ctx, esName("b", "db"), store, []string{"app/db"}, nil, Pending{})

	for range 4 {
		if w := cycle(t, p, clk); len(w) != 0 {
			t.Fatalf("nothing changed, yet syncs were woken: %v", w)
		}
	}
	backend.mu.Lock()
	got := backend.probes
	backend.mu.Unlock()
	want := map[string]int{"a/app/db": 4, "a/app/api": 4, "b/app/db": 4}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("probes in 4 intervals: %v, want one per interval and namespace, store and key: %v", got, want)
	}
	if _, reads, logins := backend.totals(); reads != 0 || logins != 2 {
		t.Errorf("%d value reads and %d logins, want 0 reads (probes never read values) and 2 logins (one session per namespace)", reads, logins)
	}
	if n := len(p.keys); n != 3 {
		t.Errorf("the prober holds %d keys, want 3", n)
	}
}

func TestVersionProbeFirstRecordsThenAChangeWakesEveryReader(t *testing.T) {
	p, backend, clk := proberFixture(t)
	ctx := context.Background()
	backend.set("app/db", "1")
	for _, n := range []string{"one", "two"} {
		p.Track(ctx, esName("a", n), store, []string{"app/db"}, nil, Pending{})
	}
	p.Track(ctx, esName("a", "other"), store, []string{"app/other"}, nil, Pending{})
	backend.set("app/other", "3")

	if w := cycle(t, p, clk); len(w) != 0 {
		t.Fatalf("the first probe woke %v; it must only record", w)
	}
	if w := cycle(t, p, clk); len(w) != 0 {
		t.Fatalf("an unchanged version woke %v", w)
	}
	backend.set("app/db", "2")
	changedAt := clk.Now()
	if w := cycle(t, p, clk); !slices.Equal(w, []string{"a/one", "a/two"}) {
		t.Fatalf("after a change, woken %v, want a/one and a/two", w)
	}
	pend := p.Pending(esName("a", "one"))
	if pend.Seq == 0 || pend.Since.Before(changedAt) {
		t.Fatalf("pending %+v, want a change seen after %s", pend, changedAt)
	}
	if p.Pending(esName("a", "other")).Seq != 0 {
		t.Error("a/other reads another key, yet has a change pending")
	}
	// The sync of a/one, woken for that change, clears it; a/two's stays
	// until its own sync.
	p.Track(ctx, esName("a", "one"), store, []string{"app/db"}, map[string]observation{"app/db": {"2", pend.Since}}, pend)
	if got := p.Pending(esName("a", "one")); got.Seq != 0 {
		t.Errorf("a/one still has %+v pending after its sync", got)
	}
	if got := p.Pending(esName("a", "two")); got.Seq == 0 {
		t.Error("a/two lost its pending change before it was synced")
	}
	if w := cycle(t, p, clk); len(w) != 0 {
		t.Errorf("woken again without a change: %v", w)
	}
	if _, reads, _ := backend.totals(); reads != 0 {
		t.Errorf("the prober read %d values", reads)
	}
}

// A change between a sync's read and the prober's first probe of the key
// is a change: the sync tells the prober which version it read.
func TestVersionObservedBySyncMakesTheFirstProbeCompare(t *testing.T) {
	p, backend, clk := proberFixture(t)
	ctx := context.Background()
	backend.set("app/db", "1")
	p.Track(ctx, esName("a", "es"), store, []string{"app/db"}, map[string]observation{"app/db": {"1", clk.Now()}}, Pending{})
	clk.Step(time.Millisecond)
	backend.set("app/db", "2") // before the first probe
	if w := cycle(t, p, clk); !slices.Equal(w, []string{"a/es"}) {
		t.Fatalf("woken %v, want a/es: the version it synced is not the current one", w)
	}
}

// A change while the sync woken for the previous one is in flight stays
// pending: that sync may have read the value before it.
func TestVersionChangeDuringASyncStaysPending(t *testing.T) {
	p, backend, clk := proberFixture(t)
	ctx := context.Background()
	backend.set("app/db", "1")
	p.Track(ctx, esName("a", "es"), store, []string{"app/db"}, nil, Pending{})
	cycle(t, p, clk)
	backend.set("app/db", "2")
	cycle(t, p, clk)
	inFlight := p.Pending(esName("a", "es")) // the sync starts
	backend.set("app/db", "3")
	if w := cycle(t, p, clk); !slices.Equal(w, []string{"a/es"}) {
		t.Fatalf("woken %v, want a/es again", w)
	}
	// The sync ends, having read version 2.
	p.Track(ctx, esName("a", "es"), store, []string{"app/db"}, map[string]observation{"app/db": {"2", inFlight.Since}}, inFlight)
	if got := p.Pending(esName("a", "es")); got.Seq == 0 || got.Seq == inFlight.Seq {
		t.Errorf("pending after the sync: %+v; want the later change (not %d) still pending", got, inFlight.Seq)
	}
	if w := woken(p); len(w) != 0 {
		t.Errorf("the sync's older observation woke %v", w)
	}
	// Version 3 is still the one recorded: the next probe is no change.
	if w := cycle(t, p, clk); len(w) != 0 {
		t.Errorf("the sync's older observation replaced the newer version: the next probe woke %v", w)
	}
}

func TestVersionProbeForgetDeletedExternalSecrets(t *testing.T) {
	p, backend, clk := proberFixture(t)
	ctx := context.Background()
	backend.set("app/db", "1")
	backend.set("app/api", "1")
	p.Track(ctx, esName("a", "one"), store, []string{"app/db"}, nil, Pending{})
	p.Track(ctx, esName("a", "two"), store, []string{"app/db", "app/api"}, nil, Pending{})
	p.Forget(esName("a", "two"))
	cycle(t, p, clk)
	p.Forget(esName("a", "one"))
	cycle(t, p, clk)
	backend.mu.Lock()
	got := fmt.Sprint(backend.probes)
	backend.mu.Unlock()
	if want := fmt.Sprint(map[string]int{"a/app/db": 1}); got != want {
		t.Errorf("probes %s, want %s: a key nobody reads any more is not probed", got, want)
	}
	if len(p.keys) != 0 || len(p.followers) != 0 || p.queue.Len() != 0 {
		t.Errorf("after every ExternalSecret is forgotten the prober holds %d keys, %d followers, %d queued", len(p.keys), len(p.followers), p.queue.Len())
	}
	// A spec change drops the keys it no longer reads.
	p.Track(ctx, esName("a", "es"), store, []string{"app/db", "app/api"}, nil, Pending{})
	p.Track(ctx, esName("a", "es"), store, []string{"app/api"}, nil, Pending{})
	if len(p.keys) != 1 || p.queue.Len() != 1 {
		t.Errorf("after a spec change the prober holds %d keys (%d queued), want 1", len(p.keys), p.queue.Len())
	}
}

func TestVersionProbeErrorsKeepTheLastVersion(t *testing.T) {
	p, backend, clk := proberFixture(t)
	ctx := context.Background()
	backend.set("app/db", "1")
	p.Track(ctx, esName("a", "es"), store, []string{"app/db"}, nil, Pending{})
	cycle(t, p, clk)
	backend.mu.Lock()
	backend.fail = fmt.Errorf("vault is down")
	backend.mu.Unlock()
	if w := cycle(t, p, clk); len(w) != 0 {
		t.Fatalf("a failed probe woke %v", w)
	}
	backend.mu.Lock()
	backend.fail = nil
	backend.mu.Unlock()
	if w := cycle(t, p, clk); len(w) != 0 {
		t.Fatalf("a probe after an outage, version unchanged, woke %v", w)
	}
	backend.set("app/db", "2")
	if w := cycle(t, p, clk); !slices.Equal(w, []string{"a/es"}) {
		t.Fatalf("woken %v, want a/es", w)
	}
}

// A key that does not exist yet has a version too: its appearance wakes
// the sync (which failed, and retries with backoff), as does its deletion.
func TestVersionProbeSeesAKeyAppearAndGo(t *testing.T) {
	p, backend, clk := proberFixture(t)
	ctx := context.Background()
	p.Track(ctx, esName("a", "es"), store, []string{"app/new"}, nil, Pending{})
	cycle(t, p, clk)
	backend.set("app/new", "1")
	if w := cycle(t, p, clk); !slices.Equal(w, []string{"a/es"}) {
		t.Fatalf("a key appearing woke %v, want a/es", w)
	}
	backend.mu.Lock()
	delete(backend.versions, "app/new")
	backend.mu.Unlock()
	if w := cycle(t, p, clk); !slices.Equal(w, []string{"a/es"}) {
		t.Fatalf("a key deleted woke %v, want a/es", w)
	}
}

// Probes are checked against the tenancy rules the sync uses, per key: a
// key the store does not permit the namespace is never asked for.
func TestVersionProbeKeepsTheTenancyRules(t *testing.T) {
	p, backend, clk := proberFixture(t)
	ctx := context.Background()
	backend.set("other-team/db", "1")
	p.Track(ctx, esName("a", "es"), store, []string{"other-team/db"}, nil, Pending{})
	cycle(t, p, clk)
	if probes, _, logins := backend.totals(); probes != 0 || logins != 0 {
		t.Errorf("a key outside the store's permittedKeys was probed %d times (%d logins)", probes, logins)
	}
}

// Probes of many keys are spread over the interval, not made at once.
func TestVersionProbesAreSpread(t *testing.T) {
	p, backend, clk := proberFixture(t)
	ctx := context.Background()
	var keys []string
	for i := range 300 {
		k := fmt.Sprintf("app/k-%03d", i)
		backend.set(k, "1")
		keys = append(keys, k)
	}
	p.Track(ctx, esName("a", "es"), store, keys, nil, Pending{})
	var perStep []int
	for range 15 {
		before, _, _ := backend.totals()
		p.ProbeDue(ctx)
		after, _, _ := backend.totals()
		perStep = append(perStep, after-before)
		clk.Step(time.Second)
	}
	for _, n := range perStep {
		if n > 60 { // 300 over 15 s is 20 a second; a hash spreads them unevenly, but not into a burst
			t.Errorf("probes per second over the first interval: %v; want them spread", perStep)
			break
		}
	}
	if total, _, _ := backend.totals(); total > 300 {
		t.Errorf("%d probes in the first interval, want at most one per key", total)
	}
	p.ProbeDue(ctx) // the end of the interval
	backend.mu.Lock()
	defer backend.mu.Unlock()
	for _, k := range keys {
		if n := backend.probes["a/"+k]; n == 0 {
			t.Errorf("%s not probed in the first interval", k)
		}
	}
}

func TestProbeKeys(t *testing.T) {
	es := &v1alpha1.ExternalSecret{Spec: v1alpha1.ExternalSecretSpec{
		Data: []v1alpha1.ExternalSecretData{
			{SecretKey: "a", RemoteRef: v1alpha1.RemoteRef{Key: "app/db", Property: "user"}},
			{SecretKey: "b", RemoteRef: v1alpha1.RemoteRef{Key: "app/db", Property: "password"}},
			{SecretKey: "c", RemoteRef: v1alpha1.RemoteRef{Key: "app/pinned", Version: "3"}},
		},
		DataFrom: []v1alpha1.ExternalSecretDataFrom{
			{Extract: &v1alpha1.ExternalSecretExtract{Key: "app/config"}},
			{Find: &v1alpha1.ExternalSecretFind{Path: "app/"}},
		},
	}}
	keys, unprobed := ProbeKeys(es)
	if !slices.Equal(keys, []string{"app/db", "app/config"}) || unprobed == "" {
		t.Errorf("ProbeKeys = %q, %q; want app/db and app/config (the pinned version does not change), and a reason for the find", keys, unprobed)
	}
}

// The sync reads a value no older than the version it observed first, and
// a sync woken by a change reads nothing the cache held from before it.
func TestReadCacheReadsAfterTheObservedVersion(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	c := NewReadCache(5*time.Minute, clk)
	backend := newVersioned()
	backend.set("app/db", "1")
	src := &resolve.Source{
		ExternalSecret: &v1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "es"}},
		StoreKind:      v1alpha1.SecretStoreKindNamespaced, StoreName: "vault",
		Store: &v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{Server: "https://vault"}}},
	}
	ctx := context.Background()
	sync := func(since time.Time) (time.Time, int) {
		t.Helper()
		cp, err := c.provider(src, backend.factory, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cp.Close() }()
		cp.since = since
		_, first, err := cp.versionAt(ctx, "app/db")
		if err != nil {
			t.Fatal(err)
		}
		cp.after = map[string]time.Time{"app/db": first}
		before := backend.reads
		if _, err := cp.GetSecret(ctx, fetch.Ref{Key: "app/db"}); err != nil {
			t.Fatal(err)
		}
		return first, backend.reads - before
	}
	t0 := clk.Now()
	if first, reads := sync(time.Time{}); reads != 1 || !first.Equal(t0) {
		t.Fatalf("the first sync read %d values, version first seen %s; want 1 and %s", reads, first, t0)
	}
	clk.Step(time.Second)
	if _, reads := sync(time.Time{}); reads != 0 {
		t.Errorf("a second sync of the same version read %d values, want 0 (shared)", reads)
	}
	// A probe later sees the same version: it has been current since t0,
	// and the value read at t0 still serves.
	clk.Step(time.Second)
	probe, _ := c.provider(src, backend.factory, 0)
	if _, first, _ := probe.versionAt(ctx, "app/db"); !first.Equal(t0) {
		t.Errorf("an unchanged version is first seen at %s, want %s", first, t0)
	}
	if _, reads := sync(time.Time{}); reads != 0 {
		t.Errorf("after an unchanged probe a sync read %d values, want 0", reads)
	}
	// The version changes; the probe sees it at t2.
	clk.Step(time.Second)
	backend.set("app/db", "2")
	t2 := clk.Now()
	if v, first, _ := probe.versionAt(ctx, "app/db"); v != "2" || !first.Equal(t2) {
		t.Fatalf("probe: %q first seen %s, want 2 at %s", v, first, t2)
	}
	clk.Step(time.Second)
	if _, reads := sync(t2); reads != 1 {
		t.Errorf("a sync woken by the change read %d values, want 1: the cached value is older than the change", reads)
	}
	if _, reads := sync(t2); reads != 0 {
		t.Errorf("a second sync woken by the same change read %d values, want 0 (shared after the change)", reads)
	}
}

func TestProbePlan(t *testing.T) {
	src := func(version v1alpha1.VaultKVVersion) *resolve.Source {
		return &resolve.Source{StoreKind: v1alpha1.SecretStoreKindNamespaced, StoreName: "vault", Store: &v1alpha1.SecretStoreSpec{
			Provider: v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{Server: "https://vault", Version: version}},
		}}
	}
	es := func(refresh time.Duration) *v1alpha1.ExternalSecret {
		return &v1alpha1.ExternalSecret{Spec: v1alpha1.ExternalSecretSpec{
			RefreshInterval: &metav1.Duration{Duration: refresh},
			Data:            []v1alpha1.ExternalSecretData{{SecretKey: "a", RemoteRef: v1alpha1.RemoteRef{Key: "app/db"}}},
		}}
	}
	if follow, keys, why := probePlan(es(time.Hour), src(v1alpha1.VaultKVv2)); !follow || !slices.Equal(keys, []string{"app/db"}) || why != "" {
		t.Errorf("KV v2: follow %t, keys %q, %q; want app/db probed", follow, keys, why)
	}
	if follow, keys, why := probePlan(es(time.Hour), src(v1alpha1.VaultKVv1)); !follow || len(keys) != 0 || !strings.Contains(why, "KV v1") {
		t.Errorf("KV v1: follow %t, keys %q, %q; want nothing probed, and why", follow, keys, why)
	}
	if follow, _, _ := probePlan(es(0), src(v1alpha1.VaultKVv2)); follow {
		t.Error("refreshInterval 0 (sync once) is followed by probes")
	}
}

// An SSM parameter named with a selector is not probed: "name:3" reads a
// version that never changes, "name:label" the version a label points at,
// which DescribeParameters does not tell (before, each was probed and
// refused every interval). Secrets Manager ARNs, colons and all, are.
func TestProbePlanSSMSelectors(t *testing.T) {
	es := &v1alpha1.ExternalSecret{Spec: v1alpha1.ExternalSecretSpec{
		RefreshInterval: &metav1.Duration{Duration: time.Hour},
		Data: []v1alpha1.ExternalSecretData{
			{SecretKey: "a", RemoteRef: v1alpha1.RemoteRef{Key: "/app/db"}},
			{SecretKey: "b", RemoteRef: v1alpha1.RemoteRef{Key: "/app/db:3"}},
			{SecretKey: "c", RemoteRef: v1alpha1.RemoteRef{Key: "arn:aws:ssm:eu-west-1:123456789012:parameter/app/api"}},
		},
	}}
	store := func(service v1alpha1.AWSService) *resolve.Source {
		return &resolve.Source{ExternalSecret: es, StoreKind: v1alpha1.SecretStoreKindNamespaced, StoreName: "aws",
			Store: &v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{AWS: &v1alpha1.AWSProvider{Service: service, Region: "eu-west-1"}}}}
	}

	follow, keys, unprobed := probePlan(es, store(v1alpha1.AWSParameterStore))
	if !follow || !slices.Equal(keys, []string{"/app/db", "arn:aws:ssm:eu-west-1:123456789012:parameter/app/api"}) || unprobed != "" {
		t.Errorf("probePlan = %v, %q, %q; want the two keys without a selector, no reason (a pinned version does not change)", follow, keys, unprobed)
	}

	es.Spec.Data = append(es.Spec.Data, v1alpha1.ExternalSecretData{SecretKey: "d", RemoteRef: v1alpha1.RemoteRef{Key: "/app/flags:stable"}})
	_, keys, unprobed = probePlan(es, store(v1alpha1.AWSParameterStore))
	if slices.Contains(keys, "/app/flags:stable") || !strings.Contains(unprobed, `"/app/flags:stable" follows a label`) {
		t.Errorf("probePlan = %q, %q; want the labelled parameter left out, with the reason", keys, unprobed)
	}

	sm := &v1alpha1.ExternalSecret{Spec: v1alpha1.ExternalSecretSpec{
		RefreshInterval: &metav1.Duration{Duration: time.Hour},
		Data: []v1alpha1.ExternalSecretData{
			{SecretKey: "a", RemoteRef: v1alpha1.RemoteRef{Key: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:app-db-AbCdEf"}},
		},
	}}
	if _, keys, _ := probePlan(sm, store(v1alpha1.AWSSecretsManager)); len(keys) != 1 {
		t.Errorf("Secrets Manager keys %q, want its ARN probed", keys)
	}
}
