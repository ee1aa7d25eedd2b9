// Package tenancy decides which namespaces may use what: the rules that keep
// one tenant from reading another's secrets.
package tenancy

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
)

// StoreAdmits reports whether a ClusterSecretStore with these conditions
// admits namespace ns. No conditions admit every namespace; otherwise any one
// condition must match, and within it every field that is set.
func StoreAdmits(conds []v1alpha1.ClusterSecretStoreCondition, ns *corev1.Namespace) (bool, error) {
	if len(conds) == 0 {
		return true, nil
	}
	for i, c := range conds {
		ok, err := conditionMatches(c, ns)
		if err != nil {
			return false, fmt.Errorf("spec.conditions[%d]: %w", i, err)
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

func conditionMatches(c v1alpha1.ClusterSecretStoreCondition, ns *corev1.Namespace) (bool, error) {
	if c.NamespaceSelector != nil {
		sel, err := labelSelector(c.NamespaceSelector)
		if err != nil {
			return false, fmt.Errorf("namespaceSelector: %w", err)
		}
		if !sel.Matches(labels.Set(ns.Labels)) {
			return false, nil
		}
	}
	if len(c.Namespaces) > 0 && !contains(c.Namespaces, ns.Name) {
		return false, nil
	}
	if len(c.NamespaceRegexes) > 0 {
		matched := false
		for _, expr := range c.NamespaceRegexes {
			re, err := compileWhole(expr)
			if err != nil {
				return false, fmt.Errorf("namespaceRegexes %q: %w", expr, err)
			}
			if re.MatchString(ns.Name) {
				matched = true
				break
			}
		}
		if !matched {
			return false, nil
		}
	}
	return true, nil
}

func labelSelector(s *metav1.LabelSelector) (labels.Selector, error) {
	return metav1.LabelSelectorAsSelector(s)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
