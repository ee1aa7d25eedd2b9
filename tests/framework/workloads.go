package framework

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ReplicaSets counts the ReplicaSets a Deployment owns in ns: one per
// rollout, as a user reading `kubectl get rs` would count them.
func (c *Cluster) ReplicaSets(ctx context.Context, ns, deployment string) (int, error) {
	list := &appsv1.ReplicaSetList{}
	if err := c.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
		return 0, err
	}
	n := 0
	for _, rs := range list.Items {
		for _, o := range rs.OwnerReferences {
			if o.Kind == "Deployment" && o.Name == deployment {
				n++
			}
		}
	}
	return n, nil
}
