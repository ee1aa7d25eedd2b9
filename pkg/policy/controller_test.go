package policy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keyhook/keyhook/pkg/annotations"
)

func podMeta(ns, name string, labels, ann map[string]string) metav1.PartialObjectMetadata {
	return metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, Annotations: ann}}
}

func TestNotInjected(t *testing.T) {
	p := pol("pci", map[string]string{"env": "prod"}, nil, true, "", "db")
	p.Spec.PodSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "batch", Operator: metav1.LabelSelectorOpDoesNotExist}}}
	injected := map[string]string{annotations.Status: annotations.StatusInjected}
	terminating := podMeta("shop", "old-going", nil, nil)
	terminating.DeletionTimestamp = &metav1.Time{}
	got := NotInjected(&p, map[string]map[string]string{"shop": {"env": "prod"}, "cart": {"env": "prod"}, "dev": {"env": "dev"}}, []metav1.PartialObjectMetadata{
		podMeta("shop", "web-2", nil, nil),
		podMeta("shop", "web-1", map[string]string{"app.kubernetes.io/name": "keyhook"}, nil),
		podMeta("shop", "web-3", nil, injected),
		podMeta("shop", "job", map[string]string{"batch": "yes"}, nil),
		podMeta("cart", "api", nil, map[string]string{annotations.Status: "something else"}),
		podMeta("dev", "tool", nil, nil),
		terminating,
	})
	if diff := cmp.Diff([]string{"cart/api", "shop/web-1", "shop/web-2"}, got); diff != "" {
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
	for _, want := range []string{"7 pods", "a/1, a/2, a/3, a/4, a/5 and 2 more", "delete them"} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("message %q does not say %q", c.Message, want)
		}
	}
	if strings.Contains(c.Message, "a/6") {
		t.Errorf("message names more than %d pods: %q", maxNamed, c.Message)
	}
}
