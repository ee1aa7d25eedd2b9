package secretsync

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
)

// named is an ExternalSecret of team-a targeting the Secret "db".
func named(name, uid string, opts ...func(*v1alpha1.ExternalSecret)) *v1alpha1.ExternalSecret {
	e := &v1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: name, UID: types.UID(uid)}}
	e.Spec.Target.Name = "db"
	for _, o := range opts {
		o(e)
	}
	return e
}

// writtenBy is the Secret "db" as keyhook writes it for e.
func writtenBy(e *v1alpha1.ExternalSecret) *corev1.Secret {
	return Desired(e, map[string][]byte{"k": []byte("v")})
}

func TestClaimTarget(t *testing.T) {
	a := named("a", "uid-a")
	aOrphan := named("a", "uid-a", policy(v1alpha1.CreationPolicyOrphan))
	deleting := named("a", "uid-a", func(e *v1alpha1.ExternalSecret) { e.DeletionTimestamp = ptr.To(metav1.Now()) })
	moved := named("a", "uid-a", func(e *v1alpha1.ExternalSecret) { e.Spec.Target.Name = "elsewhere" })
	aNone := named("a", "uid-a", policy(v1alpha1.CreationPolicyNone))
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "db"}}
	helmMade := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "db",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "external-secrets.io/v1", Kind: "ExternalSecret", Name: "db", UID: "x", Controller: ptr.To(true)}}}}

	const ownedByA = `Secret "db" is owned by ExternalSecret "a", which targets it too; two ExternalSecrets never write one Secret: ` +
		`name another target (spec.target.name), or delete ExternalSecret "a" and this one takes the Secret over`
	for _, tc := range []struct {
		name     string
		es       *v1alpha1.ExternalSecret
		existing *corev1.Secret
		owner    *v1alpha1.ExternalSecret
		want     string
	}{
		{"no Secret yet", named("b", "uid-b"), nil, nil, ""},
		{"its own Secret", a, writtenBy(a), nil, ""},
		{"its own Secret, Orphan", aOrphan, writtenBy(aOrphan), nil, ""},
		{"made again under its name", named("a", "uid-a2"), writtenBy(a), nil, ""},
		{"another's (Owner)", named("b", "uid-b"), writtenBy(a), a, ownedByA},
		{"another's (Orphan: by annotation)", named("b", "uid-b"), writtenBy(aOrphan), aOrphan, ownedByA},
		{"another's, asked as Orphan", named("b", "uid-b", policy(v1alpha1.CreationPolicyOrphan)), writtenBy(a), a, ownedByA},
		{"another's, asked as Merge", named("b", "uid-b", policy(v1alpha1.CreationPolicyMerge)), writtenBy(a), a, ownedByA},
		{"another's, asked as None: writes nothing", named("b", "uid-b", policy(v1alpha1.CreationPolicyNone)), writtenBy(a), a, ""},
		{"owner deleted", named("b", "uid-b"), writtenBy(a), nil, ""},
		{"owner being deleted", named("b", "uid-b"), writtenBy(a), deleting, ""},
		{"owner deleted, another made under its name", named("b", "uid-b"), writtenBy(a), named("a", "uid-a2"), ""},
		{"owner moved to another target", named("b", "uid-b"), writtenBy(a), moved, ""},
		{"owner now writes nothing (None)", named("b", "uid-b"), writtenBy(a), aNone, ""},
		{"not keyhook's, Merge merges into it", named("b", "uid-b", policy(v1alpha1.CreationPolicyMerge)), foreign, nil, ""},
		{"not keyhook's, Owner", named("b", "uid-b"), foreign, nil,
			`Secret "db" exists and was not made by keyhook (no owner); keyhook does not take over a Secret it did not create: delete it, name another target, or use creationPolicy Merge`},
		{"not keyhook's, controlled by another tool", named("b", "uid-b", policy(v1alpha1.CreationPolicyOrphan)), helmMade, nil,
			`Secret "db" exists and was not made by keyhook (owned by ExternalSecret "db"); keyhook does not take over a Secret it did not create: delete it, name another target, or use creationPolicy Merge`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var existing metav1.Object
			if tc.existing != nil {
				existing = tc.existing
			}
			if got := ClaimTarget(tc.es, existing, tc.owner); got != tc.want {
				t.Errorf("ClaimTarget = %q\nwant         %q", got, tc.want)
			}
		})
	}
}

func TestSecretOwner(t *testing.T) {
	a := named("a", "uid-a")
	for _, tc := range []struct {
		name     string
		s        *corev1.Secret
		wantName string
		wantUID  string
	}{
		{"owner reference", writtenBy(a), "a", "uid-a"},
		{"annotation only (Orphan)", writtenBy(named("a", "uid-a", policy(v1alpha1.CreationPolicyOrphan))), "a", ""},
		{"another group's ExternalSecret is not keyhook's", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "external-secrets.io/v1", Kind: "ExternalSecret", Name: "x", UID: "u", Controller: ptr.To(true)}}}}, "", ""},
		{"nothing recorded", &corev1.Secret{}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name, uid := SecretOwner(tc.s)
			if name != tc.wantName || string(uid) != tc.wantUID {
				t.Errorf("SecretOwner = %q, %q; want %q, %q", name, uid, tc.wantName, tc.wantUID)
			}
		})
	}
}
