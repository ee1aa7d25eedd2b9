package webhookconfig

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Pod labels are the tenant's: no pod entry may select on them, or a label
// would be a way around the entry (issue: app.kubernetes.io/name=keyhook
// skipped even the enforced entry).
func TestPodEntriesExcludeByNamespaceOnly(t *testing.T) {
	for name, o := range map[string]Options{"self-managed": Defaults(), "cert-manager": CertManager()} {
		m := Mutating(o)
		if len(m.Webhooks) != 3 {
			t.Fatalf("%s: %d entries, want 3", name, len(m.Webhooks))
		}
		for _, w := range m.Webhooks {
			if w.ObjectSelector != nil {
				t.Errorf("%s: %s has objectSelector %v: a pod label would let a pod around keyhook", name, w.Name, w.ObjectSelector)
			}
			want := metav1.LabelSelectorRequirement{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "keyhook-system"}}
			if w.NamespaceSelector == nil || !slices.ContainsFunc(w.NamespaceSelector.MatchExpressions, func(r metav1.LabelSelectorRequirement) bool { return cmp.Equal(r, want) }) {
				t.Errorf("%s: %s does not leave out kube-system and keyhook-system by name: %v", name, w.Name, w.NamespaceSelector)
			}
		}
		enforced := m.Webhooks[0]
		if enforced.Name != "enforced.pods.keyhook.dev" || *enforced.FailurePolicy != admissionregistrationv1.Fail || len(enforced.MatchConditions) != 0 {
			t.Errorf("%s: the enforced entry must send every pod and fail closed: %+v", name, enforced)
		}
		// The enforced entry's own path is how the webhook learns that
		// the API server saw the namespace enforced (its cache may lag).
		for i, w := range m.Webhooks {
			want := PodPath
			if i == 0 {
				want = EnforcedPodPath
			}
			if got := *w.ClientConfig.Service.Path; got != want {
				t.Errorf("%s: %s calls %s, want %s", name, w.Name, got, want)
			}
		}
	}
}

func TestNamespaceLabelPolicy(t *testing.T) {
	o := Defaults()
	if o.NamespaceLabeler != "system:serviceaccount:keyhook-system:keyhook-controller" {
		t.Errorf("default labeler %q, want the service account of keyhook's controller", o.NamespaceLabeler)
	}
	o.NamespaceLabeler = "system:serviceaccount:keyhook-system:controller"
	p := NamespaceLabelPolicy(o)
	if p.Policy.Name != "keyhook-namespace-labels" || p.Binding.Name != p.Policy.Name || p.Binding.Spec.PolicyName != p.Policy.Name {
		t.Errorf("names: policy %q, binding %q for %q", p.Policy.Name, p.Binding.Name, p.Binding.Spec.PolicyName)
	}
	if !cmp.Equal(p.Binding.Spec.ValidationActions, []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}) || p.Binding.Spec.ParamRef != nil || p.Binding.Spec.MatchResources != nil {
		t.Errorf("the binding must deny everywhere, without params: %+v", p.Binding.Spec)
	}
	if *p.Policy.Spec.FailurePolicy != admissionregistrationv1.Fail {
		t.Error("the policy must fail closed")
	}
	rules := p.Policy.Spec.MatchConstraints.ResourceRules
	if len(rules) != 1 || !cmp.Equal(rules[0].Resources, []string{"namespaces"}) ||
		!cmp.Equal(rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}) {
		t.Errorf("the policy must see every create and update of namespaces: %+v", rules)
	}
	if p.Policy.Spec.MatchConstraints.NamespaceSelector != nil || p.Policy.Spec.MatchConstraints.ObjectSelector != nil {
		t.Error("a namespace's own labels must not decide whether its labels are guarded")
	}
	// The identity is a parameter: only the one named is let through.
	if mc := p.Policy.Spec.MatchConditions; len(mc) != 1 || mc[0].Expression != `request.userInfo.username != "system:serviceaccount:keyhook-system:controller"` {
		t.Errorf("match conditions %+v", mc)
	}
	for _, v := range p.Policy.Spec.Validations {
		if !strings.Contains(v.MessageExpression, "request.userInfo.username") {
			t.Errorf("denial %q does not name who was denied", v.MessageExpression)
		}
	}
	if !strings.Contains(p.Policy.Spec.Validations[0].MessageExpression, "system:serviceaccount:keyhook-system:controller") {
		t.Errorf("the denial does not name who may set the label: %s", p.Policy.Spec.Validations[0].MessageExpression)
	}
	if !strings.Contains(p.Policy.Spec.Validations[1].Expression, "authorizer.group('keyhook.dev').resource('clusterinjectionpolicies').check('update')") {
		t.Errorf("the labels of an enforced namespace must be left to who may update policies: %s", p.Policy.Spec.Validations[1].Expression)
	}
}

func TestPodPolicy(t *testing.T) {
	p := PodPolicy(Defaults())
	rules := p.Policy.Spec.MatchConstraints.ResourceRules
	if len(rules) != 1 || !cmp.Equal(rules[0].Resources, []string{"pods", "pods/ephemeralcontainers"}) ||
		!cmp.Equal(rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Update}) {
		t.Errorf("the policy must see pod updates and new ephemeral containers: %+v", rules)
	}
	if p.Policy.Spec.MatchConditions != nil {
		t.Error("nobody is exempt from keeping keyhook's agent as it is")
	}
	sel := p.Policy.Spec.MatchConstraints.NamespaceSelector
	if sel == nil || len(sel.MatchExpressions) != 1 || sel.MatchExpressions[0].Key != "kubernetes.io/metadata.name" {
		t.Errorf("the policy must leave out only keyhook's and kube-system's namespaces, by name: %v", sel)
	}
	for _, want := range []string{`"keyhook-agent"`, `"keyhook-token"`, `"keyhook-secrets"`} {
		found := false
		for _, v := range p.Policy.Spec.Validations {
			found = found || strings.Contains(v.Expression, want)
		}
		if !found {
			t.Errorf("no validation names %s", want)
		}
	}
}

func TestMirrorPodPolicy(t *testing.T) {
	p := MirrorPodPolicy(Defaults())
	if p.Policy.Name != "keyhook-mirror-pods" || p.Binding.Spec.PolicyName != p.Policy.Name || *p.Policy.Spec.FailurePolicy != admissionregistrationv1.Fail {
		t.Errorf("policy %q bound as %q, failure policy %v; want keyhook-mirror-pods, failing closed", p.Policy.Name, p.Binding.Spec.PolicyName, *p.Policy.Spec.FailurePolicy)
	}
	rules := p.Policy.Spec.MatchConstraints.ResourceRules
	if len(rules) != 1 || !cmp.Equal(rules[0].Resources, []string{"pods"}) ||
		!cmp.Equal(rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) {
		t.Errorf("the policy must see every pod create: %+v", rules)
	}
	want := &metav1.LabelSelector{
		MatchLabels:      map[string]string{"keyhook.dev/injection": "enforced"},
		MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "keyhook-system"}}},
	}
	if diff := cmp.Diff(want, p.Policy.Spec.MatchConstraints.NamespaceSelector); diff != "" {
		t.Errorf("the policy must hold in enforced namespaces, never in kube-system or keyhook's (-want +got):\n%s", diff)
	}
	if p.Policy.Spec.MatchConstraints.ObjectSelector != nil {
		t.Error("pod labels are the tenant's: no object selector")
	}
	if mc := p.Policy.Spec.MatchConditions; len(mc) != 1 || mc[0].Expression != `has(object.metadata.annotations) && "kubernetes.io/config.mirror" in object.metadata.annotations` {
		t.Errorf("match conditions %+v; want the mirror annotation alone", mc)
	}
	v := p.Policy.Spec.Validations
	if len(v) != 1 || v[0].Expression != `has(object.spec.nodeName) && object.spec.nodeName != '' && request.userInfo.username == "system:node:" + object.spec.nodeName && has(request.userInfo.groups) && "system:nodes" in request.userInfo.groups` {
		t.Errorf("validations %+v; want the node's kubelet alone", v)
	}
}

func TestIsNodeOf(t *testing.T) {
	nodes := []string{"system:authenticated", "system:nodes"}
	for _, tc := range []struct {
		user   string
		groups []string
		node   string
		want   bool
	}{
		{"system:node:n1", nodes, "n1", true},
		{"system:node:n1", nodes, "n2", false},
		{"system:node:n1", []string{"system:authenticated"}, "n1", false},
		{"system:node:", nodes, "", false},
		{"alice", nodes, "n1", false},
		{"system:node:n1", nodes, "", false},
	} {
		if got := IsNodeOf(tc.user, tc.groups, tc.node); got != tc.want {
			t.Errorf("IsNodeOf(%q, %q, %q) = %v, want %v", tc.user, tc.groups, tc.node, got, tc.want)
		}
	}
}
