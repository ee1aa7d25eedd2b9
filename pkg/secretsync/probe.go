package secretsync

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crsource "sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/resolve"
	kstore "github.com/keyhook/keyhook/pkg/store"
)

// DefaultVersionProbeInterval is how often the remote version of each key
// an ExternalSecret reads is probed, unless --version-probe-interval says
// otherwise.
const DefaultVersionProbeInterval = 15 * time.Second

// probeTimeout is the least time a probe is given, whatever the interval.
const probeTimeout = 10 * time.Second

// ReasonVersionProbeUnavailable is the reason of the event that says an
// ExternalSecret, or a part of it, is refreshed only every refreshInterval.
const ReasonVersionProbeUnavailable = "VersionProbeUnavailable"

// absentVersion is the version of a remote secret that does not exist:
// its appearance, and its deletion, are changes too.
const absentVersion = "\x00absent"

var (
	versionProbes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyhook_version_probes_total",
		Help: "Probes of the remote version of a key ExternalSecrets read, by provider and result: first (recorded), unchanged, changed (the ExternalSecrets reading it are synced), or the class of a failed probe (access_denied, invalid, throttled, not_supported, error).",
	}, []string{"provider", "result"})
	versionProbeKeys = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "keyhook_version_probe_keys",
		Help: "Remote keys whose version is probed: one per namespace, store and key, however many ExternalSecrets read it.",
	})
)

// ProbeMetrics are the version probes' collectors, registered by the role
// that runs the sync.
func ProbeMetrics() []prometheus.Collector {
	return []prometheus.Collector{versionProbes, versionProbeKeys}
}

// VersionProber notices remote changes between refreshes without reading
// values: every Interval it asks the provider for the current version of
// each remote key an ExternalSecret synced successfully reads (Vault KV v2
// metadata, Secrets Manager DescribeSecret, ...), once per namespace, store
// and key however many ExternalSecrets read it, and wakes the sync of those
// ExternalSecrets when it changed. The first version seen of a key is
// recorded, not a change. The sync tells it the versions it observed
// before each read (Track), so that a change that lands between a sync's
// read and the next probe is still a change.
//
// It holds, per key, the last version and when it was seen, and the names
// of the ExternalSecrets that read it; never a value.
type VersionProber struct {
	// Interval between two probes of one key; probes of different keys are
	// spread over it.
	Interval time.Duration
	// Resolver resolves the store as the sync does: the same tenancy rules.
	Resolver *resolve.Resolver
	// Providers log in as the sync does: the namespace's own identity.
	Providers ProviderFactory
	// Reads shares the sync's logins (sessions) with the probes; nil logs
	// in for every probe.
	Reads *ReadCache
	// Workers is how many probes run at once; 0 means 1.
	Workers int
	Clock   clock.PassiveClock

	mu        sync.Mutex
	keys      map[probeKey]*keyState
	followers map[types.NamespacedName]*follower
	queue     probeQueue
	seq       uint64
	changes   chan event.GenericEvent
	wake      chan struct{}
}

var _ manager.Runnable = (*VersionProber)(nil)

// NewVersionProber returns a prober with nothing to probe yet.
func NewVersionProber(interval time.Duration, c clock.PassiveClock) *VersionProber {
	return &VersionProber{
		Interval: interval, Clock: c,
		keys:      map[probeKey]*keyState{},
		followers: map[types.NamespacedName]*follower{},
		changes:   make(chan event.GenericEvent, 1024),
		wake:      make(chan struct{}, 1),
	}
}

// probeKey is what one probe is for: a remote key, as one namespace reads
// it through one store. Probes are shared within it, as reads are.
type probeKey struct {
	Namespace, StoreKind, StoreName, Key string
}

// keyState is what the prober knows of one key.
type keyState struct {
	key     probeKey
	version string
	// at is when version was first seen: the remote secret was at version
	// (or later) from then on.
	at    time.Time
	known bool
	users map[string]struct{} // names of the ExternalSecrets (of key.Namespace) that read it

	due     time.Time
	index   int  // in the queue; -1 when not in it
	probing bool // out of the queue, being probed
	removed bool // nobody reads it any more
	failing bool // the last probe failed (logged once, until it recovers)
}

// follower is what the prober knows of one ExternalSecret.
type follower struct {
	keys []probeKey
	// pending, when not 0, is the change (a sequence number) that the
	// ExternalSecret has not been synced since; since is when that version
	// was first seen: its next sync reads nothing older.
	pending uint64
	since   time.Time
	notice  string // the fallback last announced
	tracked bool   // Track was called
}

// observation is a version the sync saw, and since when.
type observation struct {
	version string
	at      time.Time
}

// Pending is a change a probe saw that an ExternalSecret has not been
// synced with yet.
type Pending struct {
	// Seq identifies the change; 0 means none.
	Seq uint64
	// Since is when the changed version was first seen.
	Since time.Time
}

// Pending returns the change es has not been synced with, if any. A nil
// prober has none.
func (p *VersionProber) Pending(es types.NamespacedName) Pending {
	if p == nil {
		return Pending{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if f := p.followers[es]; f != nil {
		return Pending{Seq: f.pending, Since: f.since}
	}
	return Pending{}
}

// Source is the source of the sync controller's reconciles for changes:
// each ExternalSecret reading a key whose version changed.
func (p *VersionProber) Source() crsource.Source {
	return crsource.Channel(p.changes, &handler.EnqueueRequestForObject{})
}

// ProbeKeys returns the remote keys of es whose version tells when its data
// changes, and why the rest of es cannot be probed (dataFrom.find: a set
// of secrets has no one version), "" when nothing is left out. A remoteRef
// pinned to a version is not probed: it does not change.
func ProbeKeys(es *v1alpha1.ExternalSecret) (keys []string, unprobed string) {
	seen := map[string]bool{}
	add := func(key, version string) {
		if version == "" && !seen[key] {
			seen[key] = true
			keys = append(keys, key)
		}
	}
	for _, d := range es.Spec.Data {
		add(d.RemoteRef.Key, d.RemoteRef.Version)
	}
	for _, d := range es.Spec.DataFrom {
		switch {
		case d.Extract != nil:
			add(d.Extract.Key, d.Extract.Version)
		case d.Find != nil:
			unprobed = "dataFrom.find selects a set of secrets, which has no version"
		}
	}
	return keys, unprobed
}

// Track records, after a successful sync of es, the keys it reads through
// its store and the versions the sync observed before reading their values
// (observed, by key; keys missing from it were not observed). It clears the
// change pending (the one Pending returned before the sync) and returns the
// other ExternalSecrets to wake when an observation is newer than the
// version recorded, and differs.
func (p *VersionProber) Track(ctx context.Context, es types.NamespacedName, store v1alpha1.SecretStoreRef, keys []string, observed map[string]observation, synced Pending) {
	if p == nil {
		return
	}
	kind := store.Kind
	if kind == "" {
		kind = v1alpha1.SecretStoreKindNamespaced
	}
	p.mu.Lock()
	now := p.Clock.Now()
	f := p.followers[es]
	if f == nil {
		f = &follower{}
		p.followers[es] = f
	}
	f.tracked = true
	if synced.Seq != 0 && f.pending == synced.Seq {
		f.pending, f.since = 0, time.Time{}
	}
	want := make([]probeKey, 0, len(keys))
	for _, k := range keys {
		want = append(want, probeKey{Namespace: es.Namespace, StoreKind: string(kind), StoreName: store.Name, Key: k})
	}
	p.setKeysLocked(es, f, want, now)
	var wake []types.NamespacedName
	for _, pk := range want {
		o, ok := observed[pk.Key]
		if !ok {
			continue
		}
		k := p.keys[pk]
		switch {
		case !k.known:
			k.version, k.at, k.known = o.version, o.at, true
		case o.at.Before(k.at):
			// Older than what a probe has seen since.
		case o.version == k.version:
			// The same version: k.at stays the first time it was seen.
		default:
			k.version, k.at = o.version, o.at
			wake = append(wake, p.markLocked(k, es.Name, o.at)...)
		}
	}
	p.mu.Unlock()
	p.send(ctx, wake)
}

// Tracked reports whether es is followed (Track was called for it since
// this process started, and Forget was not).
func (p *VersionProber) Tracked(es types.NamespacedName) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.followers[es]
	return f != nil && f.tracked
}

// Forget stops probing for es: it was deleted, or syncs only once.
func (p *VersionProber) Forget(es types.NamespacedName) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if f := p.followers[es]; f != nil {
		p.setKeysLocked(es, f, nil, p.Clock.Now())
		delete(p.followers, es)
	}
}

// Notice reports whether es's fallback (why a part of it is refreshed only
// every refreshInterval) is news, to be announced once per process and
// reason; "" clears it.
func (p *VersionProber) Notice(es types.NamespacedName, fallback string) bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.followers[es]
	if f == nil {
		if fallback == "" {
			return false
		}
		f = &follower{}
		p.followers[es] = f
	}
	news := fallback != "" && fallback != f.notice
	f.notice = fallback
	return news
}

// setKeysLocked makes want the keys of es: it adds es as a reader of the
// new ones (queueing keys nobody read before, spread over the interval)
// and drops it from the others (and keys nobody reads any more).
func (p *VersionProber) setKeysLocked(es types.NamespacedName, f *follower, want []probeKey, now time.Time) {
	keep := make(map[probeKey]bool, len(want))
	for _, k := range want {
		keep[k] = true
	}
	for _, old := range f.keys {
		if keep[old] {
			continue
		}
		k := p.keys[old]
		if k == nil {
			continue
		}
		delete(k.users, es.Name)
		if len(k.users) == 0 {
			k.removed = true
			if k.index >= 0 {
				heap.Remove(&p.queue, k.index)
			}
			delete(p.keys, old)
		}
	}
	for _, pk := range want {
		k := p.keys[pk]
		if k == nil {
			k = &keyState{key: pk, users: map[string]struct{}{}, index: -1, due: now.Add(p.offset(pk))}
			p.keys[pk] = k
			heap.Push(&p.queue, k)
			select {
			case p.wake <- struct{}{}:
			default:
			}
		}
		k.users[es.Name] = struct{}{}
	}
	f.keys = want
	versionProbeKeys.Set(float64(len(p.keys)))
}

// offset spreads the first probes of keys over the interval, each key at
// its own point of it, rather than all at once.
func (p *VersionProber) offset(k probeKey) time.Duration {
	if p.Interval <= 0 {
		return 0
	}
	h := fnv.New64a()
	for _, s := range []string{k.Namespace, k.StoreKind, k.StoreName, k.Key} {
		_, _ = h.Write([]byte(s))
		_, _ = h.Write([]byte{0})
	}
	return time.Duration(h.Sum64() % uint64(p.Interval))
}

// markLocked records a change of k, first seen at since, as pending for
// every ExternalSecret that reads it but except, and returns them.
func (p *VersionProber) markLocked(k *keyState, except string, since time.Time) []types.NamespacedName {
	p.seq++
	var out []types.NamespacedName
	for name := range k.users {
		if name == except {
			continue
		}
		es := types.NamespacedName{Namespace: k.key.Namespace, Name: name}
		f := p.followers[es]
		if f == nil {
			continue
		}
		f.pending = p.seq
		if since.After(f.since) {
			f.since = since
		}
		out = append(out, es)
	}
	return out
}

// send wakes the sync of each of es.
func (p *VersionProber) send(ctx context.Context, es []types.NamespacedName) {
	for _, n := range es {
		obj := &v1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Namespace: n.Namespace, Name: n.Name}}
		select {
		case p.changes <- event.GenericEvent{Object: obj}:
		case <-ctx.Done():
			return
		}
	}
}

// Start probes until ctx ends. It implements manager.Runnable.
func (p *VersionProber) Start(ctx context.Context) error {
	if p.Interval <= 0 {
		<-ctx.Done()
		return nil
	}
	timer := time.NewTimer(p.Interval)
	defer timer.Stop()
	for {
		wait := p.ProbeDue(ctx)
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-p.wake:
		}
	}
}

// NeedLeaderElection reports true: only the leader syncs, so only the
// leader probes.
func (p *VersionProber) NeedLeaderElection() bool { return true }

// ProbeDue probes every key that is due (or nearly: probes are batched a
// few per second at most), Workers at a time, and returns how long until
// the next key is due.
func (p *VersionProber) ProbeDue(ctx context.Context) time.Duration {
	slack := min(p.Interval/50, 200*time.Millisecond)
	p.mu.Lock()
	now := p.Clock.Now()
	var batch []*keyState
	for p.queue.Len() > 0 && !p.queue[0].due.After(now.Add(slack)) {
		k := heap.Pop(&p.queue).(*keyState)
		k.probing = true
		batch = append(batch, k)
	}
	p.mu.Unlock()

	work := make(chan *keyState)
	var wg sync.WaitGroup
	for range min(max(1, p.Workers), len(batch)) {
		wg.Go(func() {
			for k := range work {
				p.probe(ctx, k)
			}
		})
	}
	for _, k := range batch {
		work <- k
	}
	close(work)
	wg.Wait()

	p.mu.Lock()
	defer p.mu.Unlock()
	now = p.Clock.Now()
	for _, k := range batch {
		k.probing = false
		if k.removed {
			continue
		}
		k.due = k.due.Add(p.Interval)
		if k.due.Before(now) {
			k.due = now // fallen behind: as soon as possible, without a burst of catching up
		}
		heap.Push(&p.queue, k)
	}
	if p.queue.Len() == 0 {
		return p.Interval
	}
	return max(p.queue[0].due.Sub(now), slack, time.Millisecond)
}

// probe asks for the current version of k's key, as one of the
// ExternalSecrets that read it would: resolved with the same tenancy rules,
// logged in as the namespace (sharing the sync's session), never reading
// the value. A change wakes the sync of every ExternalSecret reading it.
func (p *VersionProber) probe(ctx context.Context, k *keyState) {
	p.mu.Lock()
	var user string
	for name := range k.users {
		user = name
		break
	}
	p.mu.Unlock()
	logger := log.FromContext(ctx).WithValues("namespace", k.key.Namespace, "storeKind", k.key.StoreKind, "store", k.key.StoreName, "remoteKey", k.key.Key)
	// An ExternalSecret of the key alone: the tenancy rules are checked for
	// this key, whatever else its readers read.
	es := &v1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Namespace: k.key.Namespace, Name: user},
		Spec: v1alpha1.ExternalSecretSpec{
			SecretStoreRef: v1alpha1.SecretStoreRef{Kind: v1alpha1.SecretStoreKind(k.key.StoreKind), Name: k.key.StoreName},
			Data:           []v1alpha1.ExternalSecretData{{SecretKey: "version", RemoteRef: v1alpha1.RemoteRef{Key: k.key.Key}}},
		},
	}
	provider := "unknown"
	start := p.Clock.Now()
	// A provider that hangs holds up one worker for an interval at most.
	pctx, cancel := context.WithTimeout(ctx, max(p.Interval, probeTimeout))
	defer cancel()
	version, at, err := p.currentVersion(pctx, es, &provider)
	if at.IsZero() {
		at = start // not found, which is a version too, since then
	}
	p.record(ctx, logger, k, provider, version, at, err)
}

func (p *VersionProber) currentVersion(ctx context.Context, es *v1alpha1.ExternalSecret, provider *string) (string, time.Time, error) {
	src, err := p.Resolver.ForExternalSecret(ctx, es)
	if err != nil {
		return "", time.Time{}, err
	}
	*provider = ProviderName(src.Store)
	if !kstore.Capabilities(src.Store).VersionProbe {
		return "", time.Time{}, fmt.Errorf("%s %s: %w", src.StoreKind, src.StoreName, fetch.ErrNotSupported)
	}
	key := es.Spec.Data[0].RemoteRef.Key
	if p.Reads != nil {
		cp, err := p.Reads.provider(src, p.Providers, 0) // never a cached answer
		if err != nil {
			return "", time.Time{}, err
		}
		defer closeLogged(log.FromContext(ctx), cp)
		return cp.versionAt(ctx, key)
	}
	inner, err := p.Providers(ctx, src)
	ProviderCalls.WithLabelValues(*provider, "login", callStatus(err)).Inc()
	if err != nil {
		return "", time.Time{}, err
	}
	defer closeLogged(log.FromContext(ctx), inner)
	at := p.Clock.Now()
	v, err := inner.CurrentVersion(ctx, key)
	ProviderCalls.WithLabelValues(*provider, "current_version", callStatus(err)).Inc()
	return v, at, err
}

// record takes in the answer of a probe of k.
func (p *VersionProber) record(ctx context.Context, logger logr.Logger, k *keyState, provider, version string, at time.Time, err error) {
	if errors.Is(err, fetch.ErrNotFound) {
		version, err = absentVersion, nil
	}
	var (
		result string
		wake   []types.NamespacedName
	)
	p.mu.Lock()
	if k.removed {
		p.mu.Unlock()
		return
	}
	wasFailing := k.failing
	k.failing = err != nil
	switch {
	case err != nil:
		result = callStatus(err)
	case !k.known:
		k.version, k.at, k.known = version, at, true
		result = "first"
	case at.Before(k.at), version == k.version:
		result = "unchanged"
	default:
		k.version, k.at = version, at
		result = "changed"
		wake = p.markLocked(k, "", at)
	}
	p.mu.Unlock()
	versionProbes.WithLabelValues(provider, result).Inc()
	switch {
	case err != nil && !wasFailing:
		// Once, until it recovers: a probe that keeps failing does not
		// fill the log every interval. Provider errors name keys, never values.
		logger.Error(err, "probing the remote version failed; its ExternalSecrets are refreshed every refreshInterval until it recovers")
	case err == nil && wasFailing:
		logger.Info("probing the remote version works again")
	}
	if len(wake) > 0 {
		logger.Info("remote version changed; syncing the ExternalSecrets that read it", "externalSecrets", len(wake))
		p.send(ctx, wake)
	}
}

// probeQueue is a min-heap of keys by due time.
type probeQueue []*keyState

func (q probeQueue) Len() int           { return len(q) }
func (q probeQueue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q probeQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *probeQueue) Push(x any) {
	k := x.(*keyState)
	k.index = len(*q)
	*q = append(*q, k)
}
func (q *probeQueue) Pop() any {
	old := *q
	n := len(old)
	k := old[n-1]
	old[n-1] = nil
	k.index = -1
	*q = old[:n-1]
	return k
}

// versionPass carries what one sync learns for the prober, from its read
// to its end.
type versionPass struct {
	// pending is the change the sync was woken for, if any.
	pending Pending
	// follow: the sync's ExternalSecret is probed (it refreshes).
	follow   bool
	keys     []string
	unprobed string // why (a part of) it is refreshed only every refreshInterval
	observed map[string]observation
}

// observeVersions reads the current version of each key of es that can be
// probed, before its values are read (through p, or cp when the reads are
// shared): a value read afterwards is of that version or a later one, so
// that a change after the read is a change to the prober, never missed.
// A version that cannot be read is left out: the sync goes on without it,
// and the prober's own probe of the key reports why.
func (r *Reconciler) observeVersions(ctx context.Context, es *v1alpha1.ExternalSecret, src *resolve.Source, p fetch.Provider, cp *cachedProvider, vp *versionPass) {
	if r.Versions == nil || vp == nil {
		return
	}
	if vp.follow, vp.keys, vp.unprobed = probePlan(es, src); len(vp.keys) == 0 {
		return
	}
	vp.observed = make(map[string]observation, len(vp.keys))
	after := make(map[string]time.Time, len(vp.keys))
	for _, key := range vp.keys {
		var (
			v   string
			at  time.Time
			err error
		)
		start := r.Clock.Now()
		if cp != nil {
			v, at, err = cp.versionAt(ctx, key)
		} else {
			v, err = p.CurrentVersion(ctx, key)
		}
		if at.IsZero() {
			at = start
		}
		if errors.Is(err, fetch.ErrNotFound) {
			v, err = absentVersion, nil
		}
		if err != nil {
			log.FromContext(ctx).V(1).Info("remote version not observed", "remoteKey", key, "error", err.Error())
			continue
		}
		vp.observed[key] = observation{version: v, at: at}
		after[key] = at
	}
	if cp != nil {
		cp.after = after
	}
}

// probePlan says whether es is followed by version probes (it refreshes),
// which of its keys, and why the rest is not.
func probePlan(es *v1alpha1.ExternalSecret, src *resolve.Source) (follow bool, keys []string, unprobed string) {
	if refreshInterval(es) == 0 {
		return false, nil, ""
	}
	if !kstore.Capabilities(src.Store).VersionProbe {
		return true, nil, fmt.Sprintf("%s %q has no versions to probe (Vault KV v1)", src.StoreKind, src.StoreName)
	}
	all, unprobed := ProbeKeys(es)
	for _, key := range all {
		switch probe, why := kstore.ProbeKey(src.Store, key); {
		case probe:
			keys = append(keys, key)
		case why != "" && unprobed == "":
			unprobed = why
		}
	}
	return true, keys, unprobed
}

// followSynced has the prober follow es, synced before this process
// started and not due yet, from the keys its spec reads: the first probe of
// each records its version, and the next change syncs es. Nothing is read.
func (r *Reconciler) followSynced(ctx context.Context, es *v1alpha1.ExternalSecret) {
	if r.Versions == nil || r.Versions.Tracked(types.NamespacedName{Namespace: es.Namespace, Name: es.Name}) {
		return
	}
	src, err := r.Resolver.ForExternalSecret(ctx, es)
	if err != nil {
		return // its next sync says why
	}
	vp := &versionPass{}
	vp.follow, vp.keys, vp.unprobed = probePlan(es, src)
	r.trackVersions(ctx, es, vp)
}

// trackVersions hands a successful sync's keys and observations to the
// prober, and says once in an event what of es the probes cannot follow.
func (r *Reconciler) trackVersions(ctx context.Context, es *v1alpha1.ExternalSecret, vp *versionPass) {
	if r.Versions == nil {
		return
	}
	name := types.NamespacedName{Namespace: es.Namespace, Name: es.Name}
	if !vp.follow {
		r.Versions.Forget(name)
		return
	}
	r.Versions.Track(ctx, name, es.Spec.SecretStoreRef, vp.keys, vp.observed, vp.pending)
	if r.Versions.Notice(name, vp.unprobed) {
		r.Recorder.Eventf(es, nil, corev1.EventTypeNormal, ReasonVersionProbeUnavailable, "Sync",
			"changes are seen every refreshInterval (%s), not within --version-probe-interval: %s", refreshInterval(es), vp.unprobed)
	}
}
