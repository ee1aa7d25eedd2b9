package policy

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/mutate"
	"github.com/keyhook/keyhook/pkg/plan"
)

type podOption func(*corev1.Pod)

func testPod(ns, name string, opts ...podOption) corev1.Pod {
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}},
	}
	for _, o := range opts {
		o(&p)
	}
	return p
}

func withLabels(l map[string]string) podOption { return func(p *corev1.Pod) { p.Labels = l } }

func withAnnotations(a map[string]string) podOption { return func(p *corev1.Pod) { p.Annotations = a } }

// withAgent gives the pod keyhook's init-agent with a plan fetching names, as
// files mode injects it.
func withAgent(t *testing.T, names ...string) podOption {
	t.Helper()
	pl := &plan.Plan{Version: plan.Version, FileMode: 0o400}
	for _, n := range names {
		pl.Secrets = append(pl.Secrets, plan.Secret{Name: n, Dir: "/keyhook/secrets/" + n,
			Store: plan.Store{Kind: "SecretStore", Name: "vault", Vault: &plan.Vault{Server: "https://vault:8200", Path: "secret", KVVersion: 2, TokenEnv: "T"}},
			Data:  []plan.Data{{SecretKey: "password", Ref: plan.Ref{Key: "app/db"}}}})
	}
	encoded, err := pl.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plan.Decode(encoded); err != nil {
		t.Fatalf("the test's plan does not decode: %v", err)
	}
	return func(p *corev1.Pod) {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: mutate.AgentContainerName, Image: "keyhook/agent", Env: []corev1.EnvVar{{Name: plan.EnvVar, Value: encoded}}})
	}
}

// withSecretVolume gives the pod the volume of Secret secret that secret
// mode mounts for es, mounted into its first container when mounted.
func withSecretVolume(es, secret string, mounted bool) podOption {
	return func(p *corev1.Pod) {
		vol := mutate.SecretModeVolumeName(es)
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: vol, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret}}})
		if mounted {
			p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: vol, MountPath: "/keyhook/secrets/" + es, ReadOnly: true})
		}
	}
}

func TestNotInjected(t *testing.T) {
	p := pol("pci", map[string]string{"env": "prod"}, nil, true, "", "db")
	p.Spec.PodSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "batch", Operator: metav1.LabelSelectorOpDoesNotExist}}}
	forged := map[string]string{annotations.Status: annotations.StatusInjected}
	terminating := testPod("shop", "old-going")
	terminating.DeletionTimestamp = &metav1.Time{}
	// db of shop syncs into Secret db-creds; cart's db is not known (its
	// Secret is then named db, as ExternalSecrets default to).
	targets := map[string]map[string]string{"shop": {"db": "db-creds"}}
	got := NotInjected(&p, map[string]map[string]string{"shop": {"env": "prod"}, "cart": {"env": "prod"}, "dev": {"env": "dev"}}, targets, []corev1.Pod{
		testPod("shop", "web-2"),
		testPod("shop", "web-1", withLabels(map[string]string{"app.kubernetes.io/name": "keyhook"})),
		// The status annotation alone, as a tenant can add it to a pod
		// admitted before the policy, proves nothing.
		testPod("shop", "forged", withAnnotations(forged)),
		testPod("shop", "files", withAnnotations(forged), withAgent(t, "db")),
		testPod("shop", "files-and-own", withAgent(t, "db", "api"), withAnnotations(map[string]string{annotations.Inject: "api"})),
		testPod("shop", "secret-mode", withSecretVolume("db", "db-creds", true)),
		testPod("cart", "secret-mode", withSecretVolume("db", "db", true)),
		// Imitations of secret mode: the volume of another Secret (one
		// the tenant wrote), or a volume no container mounts.
		testPod("shop", "secret-other", withAnnotations(forged), withSecretVolume("db", "db", true)),
		testPod("shop", "secret-unmounted", withAnnotations(forged), withSecretVolume("db", "db-creds", false)),
		testPod("shop", "other-secret", withAnnotations(forged), withAgent(t, "api")),
		testPod("shop", "fake-agent", withAnnotations(forged), func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: mutate.AgentContainerName, Image: "example.com/not-keyhook"}}
		}),
		testPod("shop", "job", withLabels(map[string]string{"batch": "yes"})),
		testPod("cart", "api", withAnnotations(map[string]string{annotations.Status: "something else"})),
		testPod("cart", "etcd-node-1", withAnnotations(map[string]string{corev1.MirrorPodAnnotationKey: "abc"})),
		testPod("dev", "tool"),
		terminating,
	})
	want := []string{"cart/api", "cart/etcd-node-1 (static pod)", "shop/fake-agent", "shop/forged", "shop/other-secret", "shop/secret-other", "shop/secret-unmounted", "shop/web-1", "shop/web-2"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

func TestPodsInjectedCondition(t *testing.T) {
	if c := podsInjected(missedPods{}, 3); c.Status != metav1.ConditionTrue || c.Reason != "AllInjected" || c.ObservedGeneration != 3 {
		t.Errorf("all injected: %+v", c)
	}
	var m missedPods
	for _, name := range []string{"a/7", "a/3", "a/6", "a/1", "a/5", "a/2", "a/4"} {
		m.add(name)
	}
	c := podsInjected(m, 1)
	if c.Status != metav1.ConditionFalse || c.Reason != "PodsNotInjected" {
		t.Errorf("missed pods: %+v", c)
	}
	for _, want := range []string{"7 pods", "a/1, a/2, a/3, a/4, a/5 and 2 more", "delete them", "static pods"} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("message %q does not say %q", c.Message, want)
		}
	}
	if strings.Contains(c.Message, "a/6") {
		t.Errorf("message names more than %d pods: %q", maxNamed, c.Message)
	}
}

// pagedPods is a client.Reader of pods that serves a List a page at a time,
// as the API server does with limit and continue, and refuses a List without
// a limit, or with a larger one than podPage: every pod of a namespace at
// once is what could take the controller's memory.
type pagedPods struct {
	client.Reader
	pods  []corev1.Pod
	lists int
}

func (r *pagedPods) List(_ context.Context, list client.ObjectList, opts ...client.ListOption) error {
	r.lists++
	o := (&client.ListOptions{}).ApplyOptions(opts)
	if o.Limit <= 0 || o.Limit > podPage {
		return fmt.Errorf("a list of pods with limit %d: want pages of at most %d", o.Limit, podPage)
	}
	start := 0
	if o.Continue != "" {
		var err error
		if start, err = strconv.Atoi(strings.TrimPrefix(o.Continue, "page-")); err != nil {
			return fmt.Errorf("continue %q is not a token this reader gave", o.Continue)
		}
	}
	var in []corev1.Pod
	for _, p := range r.pods {
		if p.Namespace == o.Namespace {
			in = append(in, p)
		}
	}
	end := min(start+int(o.Limit), len(in))
	out := list.(*corev1.PodList)
	out.Items = slices.Clone(in[start:end])
	out.Continue = ""
	if end < len(in) {
		out.Continue = fmt.Sprintf("page-%d", end)
	}
	return nil
}

// TestPodsInjectedPages: the PodsInjected check reads an enforcing
// policy's namespaces a page of pods at a time, and counts and names the
// pods it misses across every page.
func TestPodsInjectedPages(t *testing.T) {
	scheme := runtime.NewScheme()
	must(t, clientgoscheme.AddToScheme(scheme))
	must(t, v1alpha1.AddToScheme(scheme))
	p := pol("pci", map[string]string{"env": "prod"}, nil, true, "", "db")
	c := fake.NewClientBuilder().WithScheme(scheme).WithStatusSubresource(&v1alpha1.ClusterInjectionPolicy{}).WithObjects(
		&p,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"env": "prod"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "cart", Labels: map[string]string{"env": "prod"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "dev", Labels: map[string]string{"env": "dev"}}},
	).Build()
	pods := &pagedPods{}
	for i := range 2*podPage + 50 {
		ns, opts := "shop", []podOption{withAgent(t, "db")}
		if i%2 == 1 {
			ns = "cart"
		}
		if i%37 == 5 {
			opts = nil // admitted before the policy: on every page
		}
		pods.pods = append(pods.pods, testPod(ns, fmt.Sprintf("web-%03d", i), opts...))
	}
	pods.pods = append(pods.pods, testPod("dev", "tool"))
	r := &NamespaceLabeler{Client: c, Pods: pods}
	if _, err := r.reconcilePolicy(context.Background(), reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&p)}); err != nil {
		t.Fatal(err)
	}
	must(t, c.Get(context.Background(), client.ObjectKeyFromObject(&p), &p))
	cond := meta.FindStatusCondition(p.Status.Conditions, ConditionPodsInjected)
	if cond == nil {
		t.Fatalf("no PodsInjected condition: %+v", p.Status.Conditions)
	}
	// i%37 == 5 for i < 250: 5, 42, 79, 116, 153, 190, 227.
	want := "7 pods the policy selects run without keyhook's injection (created before their namespace was enforced, or static pods, which keyhook never injects): cart/web-005, cart/web-079, cart/web-153, cart/web-227, shop/web-042 and 2 more;"
	if cond.Status != metav1.ConditionFalse || !strings.HasPrefix(cond.Message, want) {
		t.Errorf("PodsInjected %s %q; want False, %q…", cond.Status, cond.Message, want)
	}
	if pods.lists != 4 { // shop and cart: 125 pods each, two pages; dev is not selected
		t.Errorf("%d lists of pods, want 4 (two pages of each selected namespace)", pods.lists)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
