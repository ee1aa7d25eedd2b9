package policy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keyhook/keyhook/pkg/annotations"
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

// withSecretVolume gives the pod the volume secret mode mounts for es.
func withSecretVolume(es string) podOption {
	return func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: mutate.SecretModeVolumeName(es), VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: es}}})
	}
}

func TestNotInjected(t *testing.T) {
	p := pol("pci", map[string]string{"env": "prod"}, nil, true, "", "db")
	p.Spec.PodSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "batch", Operator: metav1.LabelSelectorOpDoesNotExist}}}
	forged := map[string]string{annotations.Status: annotations.StatusInjected}
	terminating := testPod("shop", "old-going")
	terminating.DeletionTimestamp = &metav1.Time{}
	got := NotInjected(&p, map[string]map[string]string{"shop": {"env": "prod"}, "cart": {"env": "prod"}, "dev": {"env": "dev"}}, []corev1.Pod{
		testPod("shop", "web-2"),
		testPod("shop", "web-1", withLabels(map[string]string{"app.kubernetes.io/name": "keyhook"})),
		// The status annotation alone, as a tenant can add it to a pod
		// admitted before the policy, proves nothing.
		testPod("shop", "forged", withAnnotations(forged)),
		testPod("shop", "files", withAnnotations(forged), withAgent(t, "db")),
		testPod("shop", "files-and-own", withAgent(t, "db", "api"), withAnnotations(map[string]string{annotations.Inject: "api"})),
		testPod("shop", "secret-mode", withSecretVolume("db")),
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
	want := []string{"cart/api", "cart/etcd-node-1 (static pod)", "shop/fake-agent", "shop/forged", "shop/other-secret", "shop/web-1", "shop/web-2"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

func TestPodsInjectedCondition(t *testing.T) {
	if c := podsInjected(nil, 3); c.Status != metav1.ConditionTrue || c.Reason != "AllInjected" || c.ObservedGeneration != 3 {
		t.Errorf("all injected: %+v", c)
	}
	c := podsInjected([]string{"a/1", "a/2", "a/3", "a/4", "a/5", "a/6", "a/7"}, 1)
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
