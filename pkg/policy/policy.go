// Package policy decides what ClusterInjectionPolicies ask of a pod. It is
// pure: the caller lists the policies and reads the namespace (from the
// informer cache) and acts on the Decision.
package policy

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
)

// Decision is what the policies that select one pod ask for, merged.
type Decision struct {
	// Policies are the names of the selecting policies, in merge order.
	Policies []string
	// Inject are the ExternalSecrets the policies inject, in order, without
	// duplicates.
	Inject []string
	// InjectFrom maps each name of Inject to the first policy that names it.
	InjectFrom map[string]string
	// Mode is that of the first policy that sets one; "" when none does.
	Mode v1alpha1.InjectionMode
	// Enforcing are the selecting policies that enforce, in order.
	Enforcing []string
}

// Enforced reports whether any selecting policy enforces.
func (d *Decision) Enforced() bool { return d != nil && len(d.Enforcing) > 0 }

// EnforcingNames is a quoted, comma-separated list of the enforcing policies,
// for messages.
func (d *Decision) EnforcingNames() string {
	q := make([]string, len(d.Enforcing))
	for i, n := range d.Enforcing {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

// For returns the merged decision of the policies that select pod in ns, or
// nil when none does. Policies merge in name order, so the result does not
// depend on the order the cache lists them in. A policy whose selector does
// not parse is reported in the error list and selects nothing, so one broken
// policy does not take the others down; but an enforcing policy whose
// podSelector does not parse selects every pod of its namespaces (see
// selects).
func For(policies []v1alpha1.ClusterInjectionPolicy, ns *corev1.Namespace, podLabels map[string]string) (*Decision, []error) {
	sorted := slices.Clone(policies)
	slices.SortFunc(sorted, func(a, b v1alpha1.ClusterInjectionPolicy) int { return strings.Compare(a.Name, b.Name) })
	var d *Decision
	var errs []error
	for i := range sorted {
		p := &sorted[i]
		ok, err := selects(p, ns.Labels, podLabels)
		if err != nil {
			errs = append(errs, fmt.Errorf("ClusterInjectionPolicy %q: %w", p.Name, err))
		}
		if !ok {
			continue
		}
		if d == nil {
			d = &Decision{InjectFrom: map[string]string{}}
		}
		d.Policies = append(d.Policies, p.Name)
		for _, name := range p.Spec.Inject {
			if _, seen := d.InjectFrom[name]; !seen {
				d.InjectFrom[name] = p.Name
				d.Inject = append(d.Inject, name)
			}
		}
		if d.Mode == "" {
			d.Mode = p.Spec.Mode
		}
		if p.Spec.Enforce {
			d.Enforcing = append(d.Enforcing, p.Name)
		}
	}
	return d, errs
}

// SelectsNamespace reports whether p applies to a namespace with these labels.
func SelectsNamespace(p *v1alpha1.ClusterInjectionPolicy, nsLabels map[string]string) (bool, error) {
	return matches(p.Spec.NamespaceSelector, nsLabels, "spec.namespaceSelector")
}

// selects reports whether p applies to a pod with these labels in a
// namespace with these. A selector that does not parse is an error; with
// it, an enforcing policy whose namespaceSelector parses selects every pod
// of its namespaces: the namespaceSelector alone made them enforced
// (InjectionLabel), so selecting none would admit their pods uninjected
// (fail closed).
func selects(p *v1alpha1.ClusterInjectionPolicy, nsLabels, podLabels map[string]string) (bool, error) {
	ok, err := SelectsNamespace(p, nsLabels)
	if err != nil || !ok {
		return false, err
	}
	ok, err = matches(p.Spec.PodSelector, podLabels, "spec.podSelector")
	if err != nil && p.Spec.Enforce {
		return true, fmt.Errorf("%w; the policy enforces, so it selects every pod of its namespaces", err)
	}
	return ok, err
}

func matches(s *metav1.LabelSelector, set map[string]string, field string) (bool, error) {
	if s == nil {
		return true, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return false, fmt.Errorf("%s: %w", field, err)
	}
	return sel.Matches(labels.Set(set)), nil
}
