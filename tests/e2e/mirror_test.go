package e2e

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/webhookconfig"
	"github.com/keyhook/keyhook/tests/framework"
)

// warnings collects the warnings the API server answers a client with.
type warnings struct {
	mu   sync.Mutex
	seen []string
}

// HandleWarningHeader implements rest.WarningHandler.
func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := w.seen
	w.seen = nil
	return seen
}

// asNode is a clientset that acts as the kubelet of node (user
// system:node:<node>, group system:nodes), with warnings collected in w.
// The control plane authorizes with RBAC alone (no Node authorizer, no
// NodeRestriction admission, so no Node object is needed): the node's
// identity is granted ClusterRole system:node, which holds the kubelet's
// create of mirror pods, in namespaces.
func asNode(ctx context.Context, t *testing.T, node string, w rest.WarningHandler, namespaces ...string) *kubernetes.Clientset {
	t.Helper()
	user := webhookconfig.NodeUserPrefix + node
	for _, ns := range namespaces {
		binding := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "node-" + node},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node"},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
		}
		if err := cluster.Client.Create(ctx, binding); err != nil {
			t.Fatal(err)
		}
	}
	return impersonating(t, user, []string{webhookconfig.NodesGroup, "system:authenticated"}, w)
}

// impersonating is a clientset acting as user in groups, with warnings
// collected in w.
func impersonating(t *testing.T, user string, groups []string, w rest.WarningHandler) *kubernetes.Clientset {
	t.Helper()
	cfg := rest.CopyConfig(cluster.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	cfg.WarningHandler = w
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// mirrorPod is a pod of ns carrying the mirror annotation, bound to node.
func mirrorPod(ns, node string, ann map[string]string) *corev1.Pod {
	p := plainPod(ns, "static-web-"+node, ann, nil)
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	p.Annotations[corev1.MirrorPodAnnotationKey] = "5a1d2c3e"
	p.Spec.NodeName = node
	return p
}

// TestMirrorPodsAdmittedUnchanged: a mirror pod — the API server's copy of
// a static pod — created by its node's kubelet (user system:node:<node>,
// group system:nodes) is admitted without injection and with a warning
// that says why, in an enforced namespace as in one where it asks for
// injection: the API server refuses mirror pods that use service-account
// tokens or secrets, so an injected one would leave its static pod running
// unseen. The enforcing policy names it in PodsInjected.
func TestMirrorPodsAdmittedUnchanged(t *testing.T) {
	ctx := testContext(t)
	enforced := tenant(ctx, t, "mirror-enforced")
	optIn := tenant(ctx, t, "mirror-optin")
	if err := cluster.Client.Create(ctx, externalSecret(optIn, "db", v1alpha1.ExternalSecretSpec{Data: []v1alpha1.ExternalSecretData{data("password", optIn+"/db", "password", "")}})); err != nil {
		t.Fatal(err)
	}
	policy := enforce(ctx, t, enforced)

	w := &warnings{}
	node := "node-" + enforced
	kubelet := asNode(ctx, t, node, w, enforced, optIn)
	var reported string
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
	}{
		{"enforced namespace", mirrorPod(enforced, node, nil)},
		{"namespace where it asks for injection", mirrorPod(optIn, node, map[string]string{"keyhook.dev/inject": "db"})},
	} {
		w.take()
		got, err := kubelet.CoreV1().Pods(tc.pod.Namespace).Create(ctx, tc.pod, metav1.CreateOptions{})
		if err != nil {
			t.Errorf("%s: a mirror pod its node's kubelet created was refused: %v", tc.name, err)
			continue
		}
		if hasAgent(got) || len(got.Spec.Volumes) != 0 || got.Annotations["keyhook.dev/status"] != "" {
			t.Errorf("%s: the mirror pod was changed: init containers %v, volumes %v, annotations %v", tc.name, got.Spec.InitContainers, got.Spec.Volumes, got.Annotations)
		}
		warned := false
		for _, text := range w.take() {
			warned = warned || strings.Contains(text, "keyhook: mirror pod (annotation kubernetes.io/config.mirror) admitted without injection") && strings.Contains(text, "static pod")
		}
		if !warned {
			t.Errorf("%s: no warning from keyhook saying why the mirror pod is not injected", tc.name)
		}
		if tc.pod.Namespace == enforced {
			reported = enforced + "/" + got.Name + " (static pod)"
		}
	}

	// The policy reports it; a spec change makes it recheck now.
	p := &v1alpha1.ClusterInjectionPolicy{}
	if err := updateLatest(ctx, policy, func(p *v1alpha1.ClusterInjectionPolicy) { p.Spec.Mode = v1alpha1.InjectionModeFiles }); err != nil {
		t.Fatal(err)
	}
	var last metav1.Condition
	err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(policy), p); err != nil {
			return false, err
		}
		for _, c := range p.Status.Conditions {
			if c.Type == "PodsInjected" {
				last = c
				return c.ObservedGeneration == p.Generation && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, reported), nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Errorf("PodsInjected never named the mirror pod %q: last %+v", reported, last)
	}
}

// TestMirrorPodsOnlyFromTheirNode: the mirror annotation exempts a pod from
// injection only when its node's kubelet creates it. In an enforced
// namespace a mirror pod anyone else creates (a tenant with pods/create,
// the kubelet of another node, a user named like the node but outside
// system:nodes, a cluster admin) is denied by the webhook and, with the
// webhook bypassed, by the ValidatingAdmissionPolicy keyhook-mirror-pods.
// Elsewhere it is an ordinary pod: admitted when it asks for nothing,
// denied with a message that says why when keyhook would inject it (the API
// server refuses mirror pods with service-account tokens).
func TestMirrorPodsOnlyFromTheirNode(t *testing.T) {
	ctx := testContext(t)
	enforced := tenant(ctx, t, "mirror-forged")
	optIn := tenant(ctx, t, "mirror-forged-optin")
	if err := cluster.Client.Create(ctx, externalSecret(optIn, "db", v1alpha1.ExternalSecretSpec{Data: []v1alpha1.ExternalSecretData{data("password", optIn+"/db", "password", "")}})); err != nil {
		t.Fatal(err)
	}
	enforce(ctx, t, enforced)
	node := "node-" + enforced

	// A tenant who may create pods in both namespaces (ClusterRole edit).
	user := "tenant-" + enforced
	for _, ns := range []string{enforced, optIn} {
		if err := cluster.Client.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edit"},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	w := &warnings{}
	tenantCS := impersonating(t, user, []string{"system:authenticated"}, w)
	if _, err := tenantCS.CoreV1().Pods(optIn).Create(ctx, plainPod(optIn, "may-create", nil, nil), metav1.CreateOptions{}); err != nil {
		t.Fatalf("the tenant may not even create a pod, the test proves nothing: %v", err)
	}
	otherNode := asNode(ctx, t, "other-"+node, w, enforced)
	notANode := impersonating(t, webhookconfig.NodeUserPrefix+node, []string{"system:authenticated"}, w)
	if err := cluster.Client.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: enforced, Name: "not-a-node"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edit"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: webhookconfig.NodeUserPrefix + node}},
	}); err != nil {
		t.Fatal(err)
	}
	admin := impersonating(t, "keyhook-admin", []string{"system:masters"}, w)

	const says = "mirror pods may only be created by their node's kubelet"
	for _, tc := range []struct {
		name string
		as   *kubernetes.Clientset
		pod  *corev1.Pod
	}{
		{"a tenant", tenantCS, mirrorPod(enforced, node, nil)},
		{"a tenant, no node", tenantCS, mirrorPod(enforced, "", nil)},
		{"the kubelet of another node", otherNode, mirrorPod(enforced, node, nil)},
		{"the node's user name outside system:nodes", notANode, mirrorPod(enforced, node, nil)},
		{"a cluster admin", admin, mirrorPod(enforced, node, nil)},
	} {
		_, err := tc.as.CoreV1().Pods(enforced).Create(ctx, tc.pod, metav1.CreateOptions{})
		if err == nil {
			t.Errorf("%s: a mirror pod in an enforced namespace was admitted", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), says) || !strings.Contains(err.Error(), `admission webhook "enforced.pods.keyhook.dev" denied the request`) {
			t.Errorf("%s: want keyhook's webhook to deny saying %q, got %v", tc.name, says, err)
		}
	}

	// Not enforced: an ordinary pod. Asking for nothing, it is admitted as
	// it is, without the warning of a mirror pod; asking for injection, it
	// is denied with the reason.
	w.take()
	plain, err := tenantCS.CoreV1().Pods(optIn).Create(ctx, mirrorPod(optIn, node, nil), metav1.CreateOptions{})
	if err != nil || hasAgent(plain) {
		t.Errorf("a tenant's pod with the mirror annotation asking for nothing, where nothing is enforced: want it admitted as it is, got %v", err)
	}
	for _, text := range w.take() {
		if strings.Contains(text, "keyhook: mirror pod") {
			t.Errorf("a tenant's pod with the mirror annotation got the warning of a node's mirror pod: %s", text)
		}
	}
	_, err = tenantCS.CoreV1().Pods(optIn).Create(ctx, mirrorPod(optIn, node, map[string]string{"keyhook.dev/inject": "db"}), metav1.CreateOptions{})
	if err == nil {
		t.Fatal("a tenant's mirror pod asking for injection was admitted")
	}
	wantDenied(t, err, `admission webhook "pods.keyhook.dev" denied the request`, "mirror pods (annotation kubernetes.io/config.mirror) may only be created by their node's kubelet",
		"service-account token", `["db"]`, "remove the annotation")

	// The webhook bypassed for the enforced namespace (its entries leave it
	// out): the ValidatingAdmissionPolicy still denies the tenant.
	bypass(ctx, t, enforced)
	_, err = tenantCS.CoreV1().Pods(enforced).Create(ctx, mirrorPod(enforced, node, nil), metav1.CreateOptions{})
	if err == nil {
		t.Fatal("keyhook bypassed: a tenant's mirror pod in an enforced namespace was admitted")
	}
	wantDenied(t, err, "ValidatingAdmissionPolicy '"+webhook.ConfigName+"-mirror-pods'", says, user+" may not create one")
	if _, err := otherNode.CoreV1().Pods(enforced).Create(ctx, mirrorPod(enforced, node, nil), metav1.CreateOptions{}); err == nil {
		t.Error("keyhook bypassed: another node's mirror pod in an enforced namespace was admitted")
	}
	// Its node's kubelet still creates it.
	kubelet := asNode(ctx, t, node, w, enforced)
	if _, err := kubelet.CoreV1().Pods(enforced).Create(ctx, mirrorPod(enforced, node, nil), metav1.CreateOptions{}); err != nil {
		t.Errorf("keyhook bypassed: the node's own mirror pod was refused: %v", err)
	}
}

// bypass takes namespace ns out of every entry of the package's webhook
// until the test ends, and waits until the API server no longer calls it
// for ns: a plain pod of ns (enforced) passes a dry run uninjected.
func bypass(ctx context.Context, t *testing.T, ns string) {
	t.Helper()
	out := metav1.LabelSelectorRequirement{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{ns}}
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: webhook.ConfigName}}
	edit := func(add bool) func(*admissionregistrationv1.MutatingWebhookConfiguration) {
		return func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			for i := range c.Webhooks {
				sel := c.Webhooks[i].NamespaceSelector
				sel.MatchExpressions = slices.DeleteFunc(sel.MatchExpressions, func(r metav1.LabelSelectorRequirement) bool {
					return r.Key == out.Key && slices.Equal(r.Values, out.Values)
				})
				if add {
					sel.MatchExpressions = append(sel.MatchExpressions, out)
				}
			}
		}
	}
	if err := updateLatest(ctx, cfg, edit(true)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := updateLatest(context.Background(), cfg, edit(false)); err != nil {
			t.Errorf("restoring the webhook's entries: %v", err)
		}
	})
	err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		p := plainPod(ns, "bypass-probe", nil, nil)
		if err := cluster.Client.Create(ctx, p, client.DryRunAll); err != nil {
			return false, nil
		}
		return !hasAgent(p), nil
	})
	if err != nil {
		t.Fatalf("the webhook is still called for namespace %s: %v", ns, err)
	}
}
