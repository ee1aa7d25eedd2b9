package e2e

import (
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
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

// TestMirrorPodsAdmittedUnchanged: a mirror pod — the API server's copy of
// a static pod, which the kubelet creates, here the cluster admin as the
// node would — is admitted without injection and with a warning that says
// why, in an enforced namespace as in one where it asks for injection: the
// API server refuses mirror pods that use service-account tokens or
// secrets, so an injected one would leave its static pod running unseen.
// The enforcing policy names it in PodsInjected.
func TestMirrorPodsAdmittedUnchanged(t *testing.T) {
	ctx := testContext(t)
	enforced := tenant(ctx, t, "mirror-enforced")
	optIn := tenant(ctx, t, "mirror-optin")
	if err := cluster.Client.Create(ctx, externalSecret(optIn, "db", v1alpha1.ExternalSecretSpec{Data: []v1alpha1.ExternalSecretData{data("password", optIn+"/db", "password", "")}})); err != nil {
		t.Fatal(err)
	}
	policy := enforce(ctx, t, enforced)

	w := &warnings{}
	cfg := rest.CopyConfig(cluster.Config)
	cfg.WarningHandler = w
	admin, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mirrorPod := func(ns string, ann map[string]string) *corev1.Pod {
		p := plainPod(ns, "static-web-node-1", ann, nil)
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[corev1.MirrorPodAnnotationKey] = "5a1d2c3e"
		p.Spec.NodeName = "node-1"
		return p
	}
	var reported string
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
	}{
		{"enforced namespace", mirrorPod(enforced, nil)},
		{"namespace where it asks for injection", mirrorPod(optIn, map[string]string{"keyhook.dev/inject": "db"})},
	} {
		w.take()
		got, err := admin.CoreV1().Pods(tc.pod.Namespace).Create(ctx, tc.pod, metav1.CreateOptions{})
		if err != nil {
			t.Errorf("%s: a mirror pod was refused: %v", tc.name, err)
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
	err = framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
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
