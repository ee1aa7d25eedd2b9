package admission_test

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/log"

	keyhookadmission "github.com/keyhook/keyhook/pkg/admission"
	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/mutate"
	"github.com/keyhook/keyhook/pkg/resolve"
)

// testScheme knows the Kubernetes types and keyhook's, for fake clusters.
func testScheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return scheme
}

// TestEnforcedNamespaceUnknownPolicy: a pod of a namespace the API server
// sees enforced (it called the enforced entry), or whose cached label says
// so, is never admitted uninjected because this replica's cache does not
// know the enforcing ClusterInjectionPolicy yet: the API server is asked,
// and without an enforcing policy there either the pod is denied with a
// message that says to retry. Mirror pods are admitted unchanged when
// their node's kubelet creates them; anyone else's is denied in an enforced
// namespace and is an ordinary pod elsewhere.
func TestEnforcedNamespaceUnknownPolicy(t *testing.T) {
	scheme := testScheme(t)
	ns := func(labels map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: labels}}
	}
	enforcedNS := ns(map[string]string{"team": "shop", annotations.Injection: annotations.InjectionEnforced})
	plainNS := ns(map[string]string{"team": "shop"})
	store := &v1alpha1.SecretStore{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "vault"}, Spec: v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{
		Server: "https://vault:8200", Path: "secret", Version: v1alpha1.VaultKVv2,
		Auth: v1alpha1.VaultAuth{Kubernetes: &v1alpha1.VaultKubernetesAuth{MountPath: "kubernetes", Role: "app"}},
	}}}}
	db := &v1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db"}, Spec: v1alpha1.ExternalSecretSpec{
		SecretStoreRef: v1alpha1.SecretStoreRef{Name: "vault"},
		Data:           []v1alpha1.ExternalSecretData{{SecretKey: "password", RemoteRef: v1alpha1.RemoteRef{Key: "shop/db", Property: "password"}}},
	}}
	enforcing := func(podSelector *metav1.LabelSelector) *v1alpha1.ClusterInjectionPolicy {
		return &v1alpha1.ClusterInjectionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "pci"}, Spec: v1alpha1.ClusterInjectionPolicySpec{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "shop"}},
			PodSelector:       podSelector,
			Inject:            []string{"db"}, Enforce: true,
		}}
	}
	broken := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "batch", Operator: metav1.LabelSelectorOpNotIn}}}
	noBatch := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "batch", Operator: metav1.LabelSelectorOpDoesNotExist}}}
	cluster := func(objs ...client.Object) client.Reader {
		return fake.NewClientBuilder().WithScheme(scheme).WithObjects(append([]client.Object{store, db}, objs...)...).Build()
	}
	pod := func(ann, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", GenerateName: "web-", Annotations: ann, Labels: labels},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}},
		}
	}
	mirrorPod := func(ann map[string]string, node string) *corev1.Pod {
		p := pod(map[string]string{corev1.MirrorPodAnnotationKey: "0123abcd"}, nil)
		maps.Copy(p.Annotations, ann)
		p.Spec.NodeName = node
		return p
	}
	kubelet := authenticationv1.UserInfo{Username: "system:node:node-1", Groups: []string{"system:nodes", "system:authenticated"}}
	tenantUser := authenticationv1.UserInfo{Username: "alice", Groups: []string{"system:authenticated"}}
	defaulting := &v1alpha1.ClusterInjectionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "defaults"}, Spec: v1alpha1.ClusterInjectionPolicySpec{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "shop"}}, Inject: []string{"db"},
	}}
	const forged = `mirror pods may only be created by their node's kubelet: namespace "shop" is enforced by keyhook`
	const unknown = `namespace "shop" is enforced by keyhook (label keyhook.dev/injection=enforced) but no ClusterInjectionPolicy known to this webhook replica enforces it`

	for _, tc := range []struct {
		name     string
		enforced bool // sent to the enforced entry's path
		user     authenticationv1.UserInfo
		cache    client.Reader
		live     client.Reader // nil: no API server to ask
		pod      *corev1.Pod
		// want: "injected", "admitted" (unchanged) or the denial's words.
		want    string
		warning string
	}{
		{name: "enforced entry, policy unknown to the cache and the API server", enforced: true,
			cache: cluster(enforcedNS), live: cluster(enforcedNS), pod: pod(nil, nil), want: unknown},
		{name: "enforced entry, policy unknown, no API server to ask", enforced: true,
			cache: cluster(enforcedNS), pod: pod(nil, nil), want: unknown},
		{name: "enforced entry, the cache lags the namespace's labels", enforced: true,
			cache: cluster(ns(nil), enforcing(nil)), pod: pod(nil, nil), want: unknown},
		{name: "enforced entry, the API server knows the policy", enforced: true,
			cache: cluster(plainNS), live: cluster(enforcedNS, enforcing(nil)), pod: pod(nil, nil), want: "injected"},
		{name: "enforced entry, the pod opts out, the API server knows the policy", enforced: true,
			cache: cluster(plainNS), live: cluster(enforcedNS, enforcing(nil)), pod: pod(map[string]string{annotations.Inject: "false"}, nil),
			want: `ClusterInjectionPolicy "pci" enforces injection`},
		{name: "enforced entry, known policy whose podSelector leaves the pod out", enforced: true,
			cache: cluster(enforcedNS, enforcing(noBatch)), pod: pod(nil, map[string]string{"batch": "yes"}), want: "admitted"},
		{name: "enforced entry, known policy whose podSelector does not parse", enforced: true,
			cache: cluster(enforcedNS, enforcing(broken)), pod: pod(nil, map[string]string{"batch": "yes"}), want: "injected"},
		{name: "enforced entry, known policy whose podSelector does not parse, the pod opts out", enforced: true,
			cache: cluster(enforcedNS, enforcing(broken)), pod: pod(map[string]string{annotations.Inject: "false"}, map[string]string{"batch": "yes"}),
			want: `ClusterInjectionPolicy "pci" enforces injection`},
		{name: "enforced entry, known policy", enforced: true,
			cache: cluster(enforcedNS, enforcing(nil)), pod: pod(nil, nil), want: "injected"},
		{name: "other entry, cached label enforced, no policy anywhere",
			cache: cluster(enforcedNS, &v1alpha1.ClusterInjectionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: v1alpha1.ClusterInjectionPolicySpec{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "else"}}, Enforce: true,
			}}), pod: pod(nil, nil), want: unknown},
		{name: "other entry, cached label enforced, the API server has removed it",
			cache: cluster(enforcedNS, enforcing(nil)), live: cluster(plainNS), pod: pod(nil, nil), want: "injected"},
		{name: "other entry, no policy", cache: cluster(plainNS), pod: pod(nil, nil), want: "admitted"},
		{name: "mirror pod of its node, enforced entry, policy unknown", enforced: true, user: kubelet,
			cache: cluster(enforcedNS), pod: mirrorPod(nil, "node-1"), want: "admitted", warning: "mirror pod"},
		{name: "mirror pod of its node, enforced entry, known policy", enforced: true, user: kubelet,
			cache: cluster(enforcedNS, enforcing(nil)), pod: mirrorPod(nil, "node-1"), want: "admitted", warning: "mirror pod"},
		{name: "mirror pod of its node asking for injection, opt-in entry", user: kubelet,
			cache: cluster(plainNS), pod: mirrorPod(map[string]string{annotations.Inject: "db"}, "node-1"), want: "admitted", warning: "mirror pod"},
		{name: "mirror pod of a tenant, enforced entry, known policy", enforced: true, user: tenantUser,
			cache: cluster(enforcedNS, enforcing(nil)), pod: mirrorPod(nil, "node-1"), want: forged},
		{name: "mirror pod of a tenant, enforced entry, policy unknown", enforced: true, user: tenantUser,
			cache: cluster(enforcedNS), live: cluster(enforcedNS), pod: mirrorPod(nil, "node-1"), want: forged},
		{name: "mirror pod of a tenant, other entry, cached label enforced", user: tenantUser,
			cache: cluster(enforcedNS, enforcing(nil)), pod: mirrorPod(nil, "node-1"), want: forged},
		{name: "mirror pod of another node, enforced entry", enforced: true, user: kubelet,
			cache: cluster(enforcedNS, enforcing(nil)), pod: mirrorPod(nil, "node-2"), want: forged},
		{name: "mirror pod of no node, enforced entry", enforced: true, user: authenticationv1.UserInfo{Username: "system:node:", Groups: kubelet.Groups},
			cache: cluster(enforcedNS, enforcing(nil)), pod: mirrorPod(nil, ""), want: forged},
		{name: "mirror pod of the node's name outside system:nodes, enforced entry", enforced: true, user: authenticationv1.UserInfo{Username: kubelet.Username},
			cache: cluster(enforcedNS, enforcing(nil)), pod: mirrorPod(nil, "node-1"), want: forged},
		{name: "mirror pod of a tenant asking for injection, opt-in entry", user: tenantUser,
			cache: cluster(plainNS), pod: mirrorPod(map[string]string{annotations.Inject: "db"}, "node-1"),
			want: `mirror pods (annotation kubernetes.io/config.mirror) may only be created by their node's kubelet (user system:node:<spec.nodeName>, group system:nodes), and the API server refuses a mirror pod with the service-account token keyhook would inject for ExternalSecrets ["db"] (annotation keyhook.dev/inject); remove the annotation`},
		{name: "mirror pod of a tenant, default entry, a policy injects", user: tenantUser,
			cache: cluster(ns(map[string]string{"team": "shop", annotations.Injection: annotations.InjectionDefault}), defaulting), pod: mirrorPod(nil, "node-1"),
			want: `ExternalSecrets ["db"] (ClusterInjectionPolicy defaults)`},
		{name: "mirror pod of a tenant asking for nothing, not enforced", user: tenantUser,
			cache: cluster(plainNS), pod: mirrorPod(nil, "node-1"), want: "admitted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &keyhookadmission.PodInjector{
				Resolver: &resolve.Resolver{Reader: tc.cache},
				Config:   mutate.Config{AgentImage: "keyhook/agent:test"},
				Enforced: tc.enforced,
				Live:     tc.live,
			}
			req := podRequest(t, tc.pod, "shop")
			req.UserInfo = tc.user
			resp := h.Handle(log.IntoContext(context.Background(), quiet), req)
			switch tc.want {
			case "injected":
				if !resp.Allowed || len(resp.Patches) == 0 {
					t.Errorf("want the pod injected, got allowed=%v %+v", resp.Allowed, resp.Result)
				}
			case "admitted":
				if !resp.Allowed || len(resp.Patches) != 0 {
					t.Errorf("want the pod admitted unchanged, got allowed=%v, %d patch operations, %+v", resp.Allowed, len(resp.Patches), resp.Result)
				}
			default:
				if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusForbidden || !strings.Contains(resp.Result.Message, tc.want) {
					t.Errorf("want a denial saying %q, got allowed=%v %+v", tc.want, resp.Allowed, resp.Result)
				}
				if tc.want == unknown && !strings.Contains(resp.Result.Message, "retry") {
					t.Errorf("the denial does not say to retry: %s", resp.Result.Message)
				}
			}
			if tc.warning == "" && len(resp.Warnings) > 0 {
				t.Errorf("unexpected warnings %q", resp.Warnings)
			}
			if tc.warning != "" && (len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], tc.warning) || !strings.Contains(resp.Warnings[0], corev1.MirrorPodAnnotationKey)) {
				t.Errorf("want one warning saying %q, got %q", tc.warning, resp.Warnings)
			}
		})
	}
}

// stalledReader is an API server that answers nothing until the request's
// context ends.
type stalledReader struct{ client.Reader }

func (stalledReader) Get(ctx context.Context, _ client.ObjectKey, _ client.Object, _ ...client.GetOption) error {
	<-ctx.Done()
	return ctx.Err()
}

func (stalledReader) List(ctx context.Context, _ client.ObjectList, _ ...client.ListOption) error {
	<-ctx.Done()
	return ctx.Err()
}

// forbiddenReader is an API server that refuses keyhook's reads.
type forbiddenReader struct{ client.Reader }

func (forbiddenReader) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return forbidden
}

func (forbiddenReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return forbidden
}

var forbidden = apierrors.NewForbidden(schema.GroupResource{Group: "keyhook.dev", Resource: "clusterinjectionpolicies"}, "",
	errors.New(`User "system:serviceaccount:keyhook-system:keyhook-webhook" cannot list resource "clusterinjectionpolicies"`))

// TestEnforcedLiveReadFails: when the read of the API server that confirms
// a lagging cache stalls or fails, the pod is denied by keyhook within the
// webhook's own deadline (not left to the API server's timeout, which fails
// open on the default entries), with a message that says to retry and
// reveals nothing of keyhook's identity or permissions; the same when the
// cache itself cannot be read.
func TestEnforcedLiveReadFails(t *testing.T) {
	scheme := testScheme(t)
	enforcedNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{annotations.Injection: annotations.InjectionEnforced}}}
	// The cache knows a policy, not one that enforces the namespace.
	other := &v1alpha1.ClusterInjectionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: v1alpha1.ClusterInjectionPolicySpec{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "else"}}, Inject: []string{"db"}, Enforce: true,
	}}
	cache := fake.NewClientBuilder().WithScheme(scheme).WithObjects(enforcedNS, other).Build()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", GenerateName: "web-"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}},
	}
	for _, tc := range []struct {
		name     string
		enforced bool
		cache    client.Reader
		live     client.Reader
		want     string
	}{
		{"the API server stalls, enforced entry", true, cache, stalledReader{}, "could not confirm its ClusterInjectionPolicies with the API server in time"},
		{"the API server stalls, default entry with the cached label enforced", false, cache, stalledReader{}, "could not confirm its ClusterInjectionPolicies with the API server in time"},
		{"the API server refuses", true, cache, forbiddenReader{}, "could not confirm its ClusterInjectionPolicies with the API server in time"},
		{"the cache cannot be read", true, forbiddenReader{}, nil, "keyhook could not read its ClusterInjectionPolicies"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &keyhookadmission.PodInjector{
				Resolver:    &resolve.Resolver{Reader: tc.cache},
				Config:      mutate.Config{AgentImage: "keyhook/agent:test"},
				Enforced:    tc.enforced,
				Live:        tc.live,
				LiveTimeout: 50 * time.Millisecond,
			}
			// The API server gives up on a webhook after its timeout; a
			// handler still reading by then has left the answer to it.
			ctx, cancel := context.WithTimeout(log.IntoContext(context.Background(), quiet), 5*time.Second)
			defer cancel()
			resp := h.Handle(ctx, podRequest(t, pod, "shop"))
			if ctx.Err() != nil {
				t.Fatal("the webhook was still reading when the API server's timeout ended")
			}
			if resp.Allowed || resp.Result == nil || !strings.Contains(resp.Result.Message, tc.want) || !strings.Contains(resp.Result.Message, "retry") {
				t.Errorf("want a denial saying %q and to retry, got allowed=%v %+v", tc.want, resp.Allowed, resp.Result)
			}
			if tc.live != nil && resp.Result != nil && resp.Result.Code != http.StatusForbidden {
				t.Errorf("want a denial (403), got code %d", resp.Result.Code)
			}
			for _, leak := range []string{"system:serviceaccount", "keyhook-webhook", "cannot list", "forbidden", "context deadline"} {
				if resp.Result != nil && strings.Contains(resp.Result.Message, leak) {
					t.Errorf("the answer reveals %q: %s", leak, resp.Result.Message)
				}
			}
		})
	}
}
