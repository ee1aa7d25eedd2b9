package policy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
)

func pol(name string, nsSel, podSel map[string]string, enforce bool, mode v1alpha1.InjectionMode, inject ...string) v1alpha1.ClusterInjectionPolicy {
	p := v1alpha1.ClusterInjectionPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if nsSel != nil {
		p.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: nsSel}
	}
	if podSel != nil {
		p.Spec.PodSelector = &metav1.LabelSelector{MatchLabels: podSel}
	}
	p.Spec.Enforce, p.Spec.Mode, p.Spec.Inject = enforce, mode, inject
	return p
}

func TestFor(t *testing.T) {
	prod := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"env": "prod"}}}
	policies := []v1alpha1.ClusterInjectionPolicy{
		// Listed out of name order on purpose: the merge must not depend on it.
		pol("b-web", nil, map[string]string{"tier": "web"}, false, v1alpha1.InjectionModeSecret, "tls", "db"),
		pol("a-prod", map[string]string{"env": "prod"}, nil, true, "", "db", "telemetry"),
		pol("c-dev", map[string]string{"env": "dev"}, nil, true, v1alpha1.InjectionModeFiles, "dev-only"),
	}
	for _, tc := range []struct {
		name      string
		podLabels map[string]string
		want      *Decision
	}{
		{"two policies merge in name order", map[string]string{"tier": "web"}, &Decision{
			Policies:   []string{"a-prod", "b-web"},
			Inject:     []string{"db", "telemetry", "tls"},
			InjectFrom: map[string]string{"db": "a-prod", "telemetry": "a-prod", "tls": "b-web"},
			Mode:       v1alpha1.InjectionModeSecret,
			Enforcing:  []string{"a-prod"},
		}},
		{"pod selector excludes", map[string]string{"tier": "batch"}, &Decision{
			Policies:   []string{"a-prod"},
			Inject:     []string{"db", "telemetry"},
			InjectFrom: map[string]string{"db": "a-prod", "telemetry": "a-prod"},
			Enforcing:  []string{"a-prod"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := For(policies, prod, tc.podLabels)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
	dev := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other", Labels: map[string]string{"env": "staging"}}}
	if got, _ := For(policies, dev, nil); got != nil {
		t.Errorf("no policy selects a staging pod without labels, got %+v", got)
	}
	if got := (*Decision)(nil); got.Enforced() {
		t.Error("a nil decision enforces nothing")
	}
}

func TestForSkipsBrokenPolicies(t *testing.T) {
	broken := pol("broken", nil, nil, true, "", "x")
	broken.Spec.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: "Bogus"}}}
	good := pol("good", nil, nil, false, "", "db")
	got, errs := For([]v1alpha1.ClusterInjectionPolicy{broken, good}, &corev1.Namespace{}, nil)
	if len(errs) != 1 {
		t.Fatalf("want one error for the broken policy, got %v", errs)
	}
	if got == nil || !cmp.Equal(got.Policies, []string{"good"}) || got.Enforced() {
		t.Errorf("the good policy must still apply alone, got %+v", got)
	}
}

// TestEnforcingPolicyWithBrokenPodSelector: a policy whose
// namespaceSelector parses enforces its namespaces (InjectionLabel reads
// only that); if its podSelector does not parse it selects every pod there,
// so none is admitted uninjected. A policy that does not enforce selects
// none, as any broken policy.
func TestEnforcingPolicyWithBrokenPodSelector(t *testing.T) {
	bad := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "batch", Operator: metav1.LabelSelectorOpIn}}}
	enforcing := pol("pci", map[string]string{"env": "prod"}, nil, true, "", "db")
	enforcing.Spec.PodSelector = bad
	soft := pol("soft", map[string]string{"env": "prod"}, nil, false, "", "tls")
	soft.Spec.PodSelector = bad
	policies := []v1alpha1.ClusterInjectionPolicy{enforcing, soft}
	prod := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"env": "prod"}}}
	if got := InjectionLabel(policies, prod.Labels); got != annotations.InjectionEnforced {
		t.Fatalf("namespace label %q, want enforced", got)
	}
	for _, podLabels := range []map[string]string{nil, {"batch": "yes"}, {"app": "web"}} {
		got, errs := For(policies, prod, podLabels)
		if len(errs) != 2 {
			t.Errorf("pod %v: want an error for each broken podSelector, got %v", podLabels, errs)
		}
		want := &Decision{Policies: []string{"pci"}, Inject: []string{"db"}, InjectFrom: map[string]string{"db": "pci"}, Enforcing: []string{"pci"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("pod %v: (-want +got)\n%s", podLabels, diff)
		}
	}
	missed := NotInjected(&enforcing, map[string]map[string]string{"shop": prod.Labels}, nil, []corev1.Pod{
		testPod("shop", "web", withLabels(map[string]string{"app": "web"})),
		testPod("shop", "job", withLabels(map[string]string{"batch": "yes"})),
	})
	if diff := cmp.Diff([]string{"shop/job", "shop/web"}, missed); diff != "" {
		t.Errorf("PodsInjected must check every pod of the namespace (-want +got)\n%s", diff)
	}
}

func TestInjectionLabel(t *testing.T) {
	policies := []v1alpha1.ClusterInjectionPolicy{
		pol("soft", map[string]string{"team": "a"}, nil, false, "", "x"),
		pol("hard", map[string]string{"env": "prod"}, nil, true, "", "x"),
	}
	for labels, want := range map[string]string{
		"team=a":        annotations.InjectionDefault,
		"env=prod":      annotations.InjectionEnforced,
		"both":          annotations.InjectionEnforced,
		"none selected": "",
	} {
		set := map[string]map[string]string{
			"team=a": {"team": "a"}, "env=prod": {"env": "prod"}, "both": {"team": "a", "env": "prod"}, "none selected": {"team": "b"},
		}[labels]
		if got := InjectionLabel(policies, set); got != want {
			t.Errorf("%s: got %q, want %q", labels, got, want)
		}
	}
}
