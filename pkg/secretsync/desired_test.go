package secretsync

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
)

func es(opts ...func(*v1alpha1.ExternalSecret)) *v1alpha1.ExternalSecret {
	e := &v1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "db", UID: "uid-1", Generation: 2}}
	for _, o := range opts {
		o(e)
	}
	return e
}

func policy(p v1alpha1.CreationPolicy) func(*v1alpha1.ExternalSecret) {
	return func(e *v1alpha1.ExternalSecret) { e.Spec.Target.CreationPolicy = p }
}

func TestDesired(t *testing.T) {
	data := map[string][]byte{"password": []byte("p"), "user": []byte("u")}
	for _, tc := range []struct {
		name string
		es   *v1alpha1.ExternalSecret
		want *corev1.Secret
	}{
		{"owner (default)", es(), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "db",
				Labels:      map[string]string{"keyhook.dev/managed": "true"},
				Annotations: map[string]string{"keyhook.dev/external-secret": "db"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "keyhook.dev/v1alpha1", Kind: "ExternalSecret", Name: "db", UID: "uid-1",
					Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
			Type: corev1.SecretTypeOpaque, Data: data,
		}},
		{"orphan, other name", es(policy(v1alpha1.CreationPolicyOrphan), func(e *v1alpha1.ExternalSecret) { e.Spec.Target.Name = "db-secret" }), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "db-secret",
				Labels:      map[string]string{"keyhook.dev/managed": "true"},
				Annotations: map[string]string{"keyhook.dev/external-secret": "db"}},
			Type: corev1.SecretTypeOpaque, Data: data,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Desired(tc.es, data)
			// The hash is checked for what it must tell apart in TestDesiredHash.
			tc.want.Annotations["keyhook.dev/data-hash"] = got.Annotations["keyhook.dev/data-hash"]
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("desired Secret (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDataHash(t *testing.T) {
	a := DataHash(map[string][]byte{"a": []byte("bc")})
	for name, other := range map[string]map[string][]byte{
		"key/value boundary moved": {"ab": []byte("c")},
		"value changed":            {"a": []byte("bd")},
		"key added":                {"a": []byte("bc"), "d": nil},
	} {
		if DataHash(other) == a {
			t.Errorf("%s: hashes alike", name)
		}
	}
	if DataHash(map[string][]byte{"x": []byte("1"), "y": []byte("2")}) != DataHash(map[string][]byte{"y": []byte("2"), "x": []byte("1")}) {
		t.Error("hash depends on map order")
	}
}

func TestUpToDate(t *testing.T) {
	data := map[string][]byte{"password": []byte("p")}
	current := Desired(es(), data)
	edited := current.DeepCopy()
	edited.Data["password"] = []byte("changed by hand")
	unlabelled := current.DeepCopy()
	unlabelled.Labels = nil
	merged := Merge(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"}, Data: map[string][]byte{"theirs": []byte("x")}}, data)
	for _, tc := range []struct {
		name     string
		existing *corev1.Secret
		es       *v1alpha1.ExternalSecret
		data     map[string][]byte
		want     bool
	}{
		{"missing", nil, es(), data, false},
		{"as written", current, es(), data, true},
		{"new data", current, es(), map[string][]byte{"password": []byte("q")}, false},
		{"edited by hand", edited, es(), data, false},
		{"label removed", unlabelled, es(), data, false},
		{"merged, other keys ignored", merged, es(policy(v1alpha1.CreationPolicyMerge)), data, true},
		// Another Merge ExternalSecret wrote its keys (and the hash of the whole) since.
		{"merged, then merged by another", Merge(merged, map[string][]byte{"other": []byte("o")}), es(policy(v1alpha1.CreationPolicyMerge)), data, true},
		{"merged, own key changed", Merge(merged, map[string][]byte{"password": []byte("q")}), es(policy(v1alpha1.CreationPolicyMerge)), data, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := UpToDate(tc.existing, tc.es, tc.data); got != tc.want {
				t.Errorf("UpToDate = %v, want %v", got, tc.want)
			}
		})
	}
	if diff := cmp.Diff(map[string][]byte{"theirs": []byte("x"), "password": []byte("p")}, merged.Data); diff != "" {
		t.Errorf("Merge data (-want +got):\n%s", diff)
	}
	if got, want := merged.Annotations["keyhook.dev/data-hash"], DataHash(map[string][]byte{"theirs": []byte("x"), "password": []byte("p")}); got != want {
		t.Errorf("Merge's data-hash %q is not the digest of the whole merged data %q", got, want)
	}
}

func TestDue(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	r := &Reconciler{Clock: clocktesting.NewFakePassiveClock(now)}
	synced := func(ago time.Duration, interval time.Duration, ready metav1.ConditionStatus) *v1alpha1.ExternalSecret {
		return es(func(e *v1alpha1.ExternalSecret) {
			e.Spec.RefreshInterval = &metav1.Duration{Duration: interval}
			e.Status.RefreshTime = &metav1.Time{Time: now.Add(-ago)}
			e.Status.SyncedResourceVersion = "2"
			e.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: ready}}
		})
	}
	secret := &corev1.Secret{}
	for _, tc := range []struct {
		name     string
		es       *v1alpha1.ExternalSecret
		existing *corev1.Secret
		// lastRead is how long ago this process last read es; 0: never.
		lastRead time.Duration
		wantDue  bool
		wantWait time.Duration
	}{
		{"never synced", es(), nil, 0, true, 0},
		{"synced, not yet due", synced(10*time.Second, time.Minute, metav1.ConditionTrue), secret, 0, false, 50 * time.Second},
		{"synced, due", synced(time.Minute, time.Minute, metav1.ConditionTrue), secret, 0, true, 0},
		// status.refreshTime is not bumped by refreshes that change
		// nothing: the read this process remembers counts.
		{"changed long ago, read lately", synced(time.Hour, time.Minute, metav1.ConditionTrue), secret, 20 * time.Second, false, 40 * time.Second},
		{"changed long ago, read an interval ago", synced(time.Hour, time.Minute, metav1.ConditionTrue), secret, time.Minute, true, 0},
		{"changed lately, read before", synced(10*time.Second, time.Minute, metav1.ConditionTrue), secret, 30 * time.Second, false, 50 * time.Second},
		{"last sync failed", synced(time.Second, time.Hour, metav1.ConditionFalse), secret, time.Second, true, 0},
		{"Secret deleted", synced(time.Second, time.Hour, metav1.ConditionTrue), nil, time.Second, true, 0},
		{"spec changed", func() *v1alpha1.ExternalSecret {
			e := synced(time.Second, time.Hour, metav1.ConditionTrue)
			e.Generation = 3
			return e
		}(), secret, time.Second, true, 0},
		{"refreshInterval 0 syncs once", synced(24*time.Hour, 0, metav1.ConditionTrue), secret, 0, false, 0},
		{"force-sync annotation changed", func() *v1alpha1.ExternalSecret {
			e := synced(time.Second, time.Hour, metav1.ConditionTrue)
			e.Annotations = map[string]string{"keyhook.dev/force-sync": "now"}
			return e
		}(), secret, time.Second, true, 0},
		{"force-sync annotation already synced", func() *v1alpha1.ExternalSecret {
			e := synced(time.Second, time.Hour, metav1.ConditionTrue)
			e.Annotations = map[string]string{"keyhook.dev/force-sync": "now"}
			e.Status.ForceSync = "now"
			return e
		}(), secret, 0, false, time.Hour - time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lastRead time.Time
			if tc.lastRead > 0 {
				lastRead = now.Add(-tc.lastRead)
			}
			wait, due := r.due(tc.es, tc.existing, lastRead, now)
			if due != tc.wantDue || wait != tc.wantWait {
				t.Errorf("due = %v after %s, want %v after %s", due, wait, tc.wantDue, tc.wantWait)
			}
		})
	}
}

// TestNextStatus: a sync writes the status only when what it records
// changes; a refresh that finds everything as it was writes nothing, not
// even a new refreshTime.
func TestNextStatus(t *testing.T) {
	earlier := metav1.NewTime(time.Date(2026, 11, 22, 11, 0, 0, 0, time.UTC))
	now := metav1.NewTime(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
	ready := metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: ReasonSynced, Message: "Secret is synced", ObservedGeneration: 2}
	failed := metav1.Condition{Type: "Ready", Status: metav1.ConditionFalse, Reason: ReasonSyncedError, Message: "could not sync: key team-a/db: not found", ObservedGeneration: 2}
	current := func(opts ...func(*v1alpha1.ExternalSecret)) *v1alpha1.ExternalSecret {
		return es(append([]func(*v1alpha1.ExternalSecret){func(e *v1alpha1.ExternalSecret) {
			c := ready
			c.LastTransitionTime = earlier
			e.Status = v1alpha1.ExternalSecretStatus{
				Conditions:            []metav1.Condition{c},
				RefreshTime:           &earlier,
				SyncedResourceVersion: "2",
				Versions:              map[string]string{"team-a/db": "3"},
			}
		}}, opts...)...)
	}
	withStatus := func(f func(*v1alpha1.ExternalSecretStatus)) func(*v1alpha1.ExternalSecret) {
		return func(e *v1alpha1.ExternalSecret) { f(&e.Status) }
	}
	for _, tc := range []struct {
		name        string
		es          *v1alpha1.ExternalSecret
		ready       metav1.Condition
		ok          *synced
		wantChanged bool
		// wantStatus is the whole status after; nil: as before.
		wantStatus *v1alpha1.ExternalSecretStatus
	}{
		{"nothing changed", current(), ready, &synced{at: now, versions: map[string]string{"team-a/db": "3"}}, false, nil},
		{"nothing changed, no versions (Owner)", current(withStatus(func(s *v1alpha1.ExternalSecretStatus) { s.Versions = nil })), ready, &synced{at: now}, false, nil},
		{"the same failure again", current(withStatus(func(s *v1alpha1.ExternalSecretStatus) {
			c := failed
			c.LastTransitionTime = earlier
			s.Conditions = []metav1.Condition{c}
		})), failed, nil, false, nil},
		{"Secret written", current(), ready, &synced{at: now, versions: map[string]string{"team-a/db": "3"}, wrote: true}, true, &v1alpha1.ExternalSecretStatus{
			Conditions:  []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: ReasonSynced, Message: "Secret is synced", ObservedGeneration: 2, LastTransitionTime: earlier}},
			RefreshTime: &now, SyncedResourceVersion: "2", Versions: map[string]string{"team-a/db": "3"},
		}},
		{"new remote version", current(), ready, &synced{at: now, versions: map[string]string{"team-a/db": "4"}}, true, &v1alpha1.ExternalSecretStatus{
			Conditions:  []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: ReasonSynced, Message: "Secret is synced", ObservedGeneration: 2, LastTransitionTime: earlier}},
			RefreshTime: &now, SyncedResourceVersion: "2", Versions: map[string]string{"team-a/db": "4"},
		}},
		{"spec changed", current(func(e *v1alpha1.ExternalSecret) { e.Generation = 3 }), metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: ReasonSynced, Message: "Secret is synced", ObservedGeneration: 3},
			&synced{at: now, versions: map[string]string{"team-a/db": "3"}}, true, &v1alpha1.ExternalSecretStatus{
				Conditions:  []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: ReasonSynced, Message: "Secret is synced", ObservedGeneration: 3, LastTransitionTime: earlier}},
				RefreshTime: &now, SyncedResourceVersion: "3", Versions: map[string]string{"team-a/db": "3"},
			}},
		{"forced", current(func(e *v1alpha1.ExternalSecret) { e.Annotations = map[string]string{"keyhook.dev/force-sync": "1"} }), ready,
			&synced{at: now, versions: map[string]string{"team-a/db": "3"}}, true, &v1alpha1.ExternalSecretStatus{
				Conditions:  []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: ReasonSynced, Message: "Secret is synced", ObservedGeneration: 2, LastTransitionTime: earlier}},
				RefreshTime: &now, ForceSync: "1", SyncedResourceVersion: "2", Versions: map[string]string{"team-a/db": "3"},
			}},
		{"failing now: condition only", current(), failed, nil, true, &v1alpha1.ExternalSecretStatus{
			Conditions:  []metav1.Condition{failed},
			RefreshTime: &earlier, SyncedResourceVersion: "2", Versions: map[string]string{"team-a/db": "3"},
		}},
		{"first sync", es(), ready, &synced{at: now}, true, &v1alpha1.ExternalSecretStatus{
			Conditions:  []metav1.Condition{ready},
			RefreshTime: &now, SyncedResourceVersion: "2",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.es.Status.DeepCopy()
			if tc.wantStatus != nil {
				want = tc.wantStatus
			}
			got := tc.es.DeepCopy()
			if changed := nextStatus(got, tc.ready, tc.ok); changed != tc.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tc.wantChanged)
			}
			// A new transition is stamped with the wall clock.
			for i := range got.Status.Conditions {
				if c := &got.Status.Conditions[i]; c.LastTransitionTime != earlier {
					c.LastTransitionTime = metav1.Time{}
				}
			}
			if diff := cmp.Diff(want, &got.Status); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		})
	}
}

func withTemplate(t *v1alpha1.ExternalSecretTemplate) func(*v1alpha1.ExternalSecret) {
	return func(e *v1alpha1.ExternalSecret) { e.Spec.Target.Template = t }
}

func TestDesiredHash(t *testing.T) {
	data := map[string][]byte{"password": []byte("p")}
	hash := func(e *v1alpha1.ExternalSecret, d map[string][]byte) string {
		return Desired(e, d).Annotations["keyhook.dev/data-hash"]
	}
	base := hash(es(), data)
	if len(base) != 64 {
		t.Fatalf("hash %q is not a sha256", base)
	}
	if hash(es(), map[string][]byte{"password": []byte("p")}) != base {
		t.Error("the same data hashes differently")
	}
	for name, other := range map[string]string{
		"data":         hash(es(), map[string][]byte{"password": []byte("q")}),
		"type":         hash(es(withTemplate(&v1alpha1.ExternalSecretTemplate{Type: corev1.SecretTypeBasicAuth})), data),
		"label":        hash(es(withTemplate(&v1alpha1.ExternalSecretTemplate{Metadata: v1alpha1.ExternalSecretTemplateMetadata{Labels: map[string]string{"team": "a"}}})), data),
		"annotation":   hash(es(withTemplate(&v1alpha1.ExternalSecretTemplate{Metadata: v1alpha1.ExternalSecretTemplateMetadata{Annotations: map[string]string{"note": "x"}}})), data),
		"owner's name": hash(es(func(e *v1alpha1.ExternalSecret) { e.Name = "other" }), data),
	} {
		if other == base {
			t.Errorf("a change of %s does not change the hash", name)
		}
	}
}

func TestDesiredWithTemplate(t *testing.T) {
	e := es(withTemplate(&v1alpha1.ExternalSecretTemplate{
		Type: corev1.SecretTypeBasicAuth,
		Metadata: v1alpha1.ExternalSecretTemplateMetadata{
			Labels:      map[string]string{"team": "a", "keyhook.dev/managed": "false"},
			Annotations: map[string]string{"note": "rotated by keyhook"},
		},
	}))
	got := Desired(e, map[string][]byte{"username": []byte("u"), "password": []byte("p")})
	want := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "db",
			Labels: map[string]string{"team": "a", "keyhook.dev/managed": "true"},
			Annotations: map[string]string{"note": "rotated by keyhook", "keyhook.dev/external-secret": "db",
				"keyhook.dev/data-hash": got.Annotations["keyhook.dev/data-hash"]},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "keyhook.dev/v1alpha1", Kind: "ExternalSecret", Name: "db", UID: "uid-1",
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
		Type: corev1.SecretTypeBasicAuth,
		Data: map[string][]byte{"username": []byte("u"), "password": []byte("p")},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("templated Secret (-want +got):\n%s", diff)
	}
}

func TestKeyedDataHash(t *testing.T) {
	data := map[string][]byte{"pin": []byte("1234")}
	a := KeyedDataHash("uid-1", data)
	if a == DataHash(data) {
		t.Error("the keyed hash equals the bare one")
	}
	if a != KeyedDataHash("uid-1", map[string][]byte{"pin": []byte("1234")}) {
		t.Error("not deterministic")
	}
	if a == KeyedDataHash("uid-2", data) {
		t.Error("another key gives the same hash")
	}
	if a == KeyedDataHash("uid-1", map[string][]byte{"pin": []byte("1235")}) {
		t.Error("another value gives the same hash")
	}
}
