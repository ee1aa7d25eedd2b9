// Package injection decides what a pod gets injected: the ExternalSecrets its
// own annotations name and those the ClusterInjectionPolicies selecting it
// add. The admission webhook injects what it decides and the rollouts follow
// what it decides, so the two cannot disagree about a pod. It links no
// provider SDK: the webhook-only binary may import it.
package injection

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/mutate"
	"github.com/keyhook/keyhook/pkg/policy"
)

// Plan is what a pod gets injected.
type Plan struct {
	// Request is the merged request: the policies' ExternalSecrets first,
	// then the pod's own, and the mode (the pod's, else the policies').
	// Nil when nothing is injected.
	Request *mutate.Request
	// Decision is what the selecting policies ask for; nil when none selects
	// the pod.
	Decision *policy.Decision
	// Explicit are the ExternalSecrets the pod's own annotation names.
	Explicit map[string]bool
	// OptedOut is set when the pod opts out (keyhook.dev/inject: "false")
	// and no policy enforces injection.
	OptedOut bool
}

// Inputs are the cluster state a Plan depends on besides the pod.
type Inputs struct {
	// Policies are all ClusterInjectionPolicies.
	Policies []v1alpha1.ClusterInjectionPolicy
	// NamespaceLabels are the labels of the pod's namespace; read only when
	// there is a policy.
	NamespaceLabels map[string]string
}

// Read lists the ClusterInjectionPolicies and, when there is any, reads the
// labels of namespace ns: from the informer cache when reader is one.
func Read(ctx context.Context, reader client.Reader, ns string) (Inputs, error) {
	list := &v1alpha1.ClusterInjectionPolicyList{}
	if err := reader.List(ctx, list); err != nil {
		return Inputs{}, fmt.Errorf("listing ClusterInjectionPolicies: %w", err)
	}
	if len(list.Items) == 0 {
		return Inputs{}, nil
	}
	namespace := &corev1.Namespace{}
	if err := reader.Get(ctx, client.ObjectKey{Name: ns}, namespace); err != nil {
		return Inputs{}, fmt.Errorf("getting Namespace %s: %w", ns, err)
	}
	return Inputs{Policies: list.Items, NamespaceLabels: namespace.Labels}, nil
}

// For decides what a pod of namespace ns with these annotations and labels
// gets injected. err is a denial: it names the annotation or policy and the
// fix. skipped lists policies whose selectors do not parse (the API server
// and the validating webhook keep most out), and the caller logs them; they
// select nothing, except an enforcing policy whose podSelector alone does
// not parse, which selects every pod of its namespaces (policy.For).
func For(ns string, in Inputs, podAnnotations, podLabels map[string]string) (plan Plan, skipped []error, err error) {
	want, err := mutate.Parse(ns, podAnnotations)
	if err != nil {
		return Plan{}, nil, err
	}
	var decision *policy.Decision
	if len(in.Policies) > 0 {
		decision, skipped = policy.For(in.Policies, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: in.NamespaceLabels}}, podLabels)
	}
	plan.Decision = decision
	optedOut := strings.TrimSpace(podAnnotations[annotations.Inject]) == annotations.OptOut
	if optedOut && decision.Enforced() {
		return plan, skipped, fmt.Errorf("pod opts out of injection (%s: %q), but ClusterInjectionPolicy %s enforces injection for it in namespace %q; remove the annotation, or ask the platform team to exclude the pod with the policy's spec.podSelector",
			annotations.Inject, annotations.OptOut, decision.EnforcingNames(), ns)
	}
	if optedOut {
		plan.OptedOut = true
		return plan, skipped, nil
	}
	plan.Explicit = map[string]bool{}
	if want != nil {
		for _, n := range want.Names {
			plan.Explicit[n] = true
		}
	}
	if decision != nil && len(decision.Inject) > 0 {
		// The policy's names first, then the pod's own, as one request,
		// validated as if the pod had listed them all.
		merged := maps.Clone(podAnnotations)
		if merged == nil {
			merged = map[string]string{}
		}
		names := slices.Clone(decision.Inject)
		if want != nil {
			names = append(names, want.Names...)
		}
		merged[annotations.Inject] = strings.Join(names, ",")
		if want, err = mutate.Parse(ns, merged); err != nil {
			return plan, skipped, fmt.Errorf("ClusterInjectionPolicy %s: %w", strings.Join(decision.Policies, ", "), err)
		}
	}
	if want != nil && want.Mode == "" && decision != nil {
		want.Mode = decision.Mode
	}
	plan.Request = want
	return plan, skipped, nil
}

// Names returns the ExternalSecrets a pod gets injected, nil when none.
func (p Plan) Names() []string {
	if p.Request == nil {
		return nil
	}
	return p.Request.Names
}
