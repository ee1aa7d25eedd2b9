package rollout

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Kind is one kind of workload keyhook rolls.
type Kind struct {
	Name     string
	New      func() client.Object
	NewList  func() client.ObjectList
	Items    func(client.ObjectList) []client.Object
	Template func(client.Object) *corev1.PodTemplateSpec
}

// Kinds are the workloads keyhook rolls.
var Kinds = []Kind{
	{
		Name:    "Deployment",
		New:     func() client.Object { return &appsv1.Deployment{} },
		NewList: func() client.ObjectList { return &appsv1.DeploymentList{} },
		Items: func(l client.ObjectList) []client.Object {
			var out []client.Object
			for i := range l.(*appsv1.DeploymentList).Items {
				out = append(out, &l.(*appsv1.DeploymentList).Items[i])
			}
			return out
		},
		Template: func(o client.Object) *corev1.PodTemplateSpec { return &o.(*appsv1.Deployment).Spec.Template },
	},
	{
		Name:    "StatefulSet",
		New:     func() client.Object { return &appsv1.StatefulSet{} },
		NewList: func() client.ObjectList { return &appsv1.StatefulSetList{} },
		Items: func(l client.ObjectList) []client.Object {
			var out []client.Object
			for i := range l.(*appsv1.StatefulSetList).Items {
				out = append(out, &l.(*appsv1.StatefulSetList).Items[i])
			}
			return out
		},
		Template: func(o client.Object) *corev1.PodTemplateSpec { return &o.(*appsv1.StatefulSet).Spec.Template },
	},
	{
		Name:    "DaemonSet",
		New:     func() client.Object { return &appsv1.DaemonSet{} },
		NewList: func() client.ObjectList { return &appsv1.DaemonSetList{} },
		Items: func(l client.ObjectList) []client.Object {
			var out []client.Object
			for i := range l.(*appsv1.DaemonSetList).Items {
				out = append(out, &l.(*appsv1.DaemonSetList).Items[i])
			}
			return out
		},
		Template: func(o client.Object) *corev1.PodTemplateSpec { return &o.(*appsv1.DaemonSet).Spec.Template },
	},
}
