package rollout

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Kind is one kind of workload keyhook rolls.
type Kind struct {
	Name    string
	New     func() client.Object
	NewList func() client.ObjectList
	// Template returns the pod template: the object's own for typed kinds,
	// so that changing it changes the object; a copy for unstructured ones,
	// written back with SetTemplate.
	Template func(client.Object) (*corev1.PodTemplateSpec, error)
	// SetTemplate writes back the annotations and containers of a template
	// that Template returned a copy of; nil for typed kinds.
	SetTemplate func(client.Object, *corev1.PodTemplateSpec) error
	// Progressing reports whether the workload's last rollout is still
	// under way. Nil: never (a CronJob's next Job simply uses the new template).
	Progressing func(client.Object) bool
}

// Kinds are the workloads keyhook always rolls.
var Kinds = []Kind{
	{
		Name:    "Deployment",
		New:     func() client.Object { return &appsv1.Deployment{} },
		NewList: func() client.ObjectList { return &appsv1.DeploymentList{} },
		Template: func(o client.Object) (*corev1.PodTemplateSpec, error) {
			return &o.(*appsv1.Deployment).Spec.Template, nil
		},
		Progressing: func(o client.Object) bool { return deploymentProgressing(o.(*appsv1.Deployment)) },
	},
	{
		Name:    "StatefulSet",
		New:     func() client.Object { return &appsv1.StatefulSet{} },
		NewList: func() client.ObjectList { return &appsv1.StatefulSetList{} },
		Template: func(o client.Object) (*corev1.PodTemplateSpec, error) {
			return &o.(*appsv1.StatefulSet).Spec.Template, nil
		},
		Progressing: func(o client.Object) bool { return statefulSetProgressing(o.(*appsv1.StatefulSet)) },
	},
	{
		Name:    "DaemonSet",
		New:     func() client.Object { return &appsv1.DaemonSet{} },
		NewList: func() client.ObjectList { return &appsv1.DaemonSetList{} },
		Template: func(o client.Object) (*corev1.PodTemplateSpec, error) {
			return &o.(*appsv1.DaemonSet).Spec.Template, nil
		},
		Progressing: func(o client.Object) bool { return daemonSetProgressing(o.(*appsv1.DaemonSet)) },
	},
	{
		Name:    "CronJob",
		New:     func() client.Object { return &batchv1.CronJob{} },
		NewList: func() client.ObjectList { return &batchv1.CronJobList{} },
		Template: func(o client.Object) (*corev1.PodTemplateSpec, error) {
			return &o.(*batchv1.CronJob).Spec.JobTemplate.Spec.Template, nil
		},
	},
}

// ArgoRolloutGVK is Argo Rollouts' Rollout, rolled when its CRD is served.
var ArgoRolloutGVK = schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "Rollout"}

// ArgoRollout is the Kind of Argo Rollouts' Rollout, read as unstructured
// so that keyhook links none of Argo's code.
var ArgoRollout = Kind{
	Name: "Rollout",
	New: func() client.Object {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(ArgoRolloutGVK)
		return u
	},
	NewList: func() client.ObjectList {
		u := &unstructured.UnstructuredList{}
		u.SetGroupVersionKind(ArgoRolloutGVK.GroupVersion().WithKind("RolloutList"))
		return u
	},
	Template: func(o client.Object) (*corev1.PodTemplateSpec, error) {
		raw, _, err := unstructured.NestedMap(o.(*unstructured.Unstructured).Object, "spec", "template")
		if err != nil {
			return nil, fmt.Errorf("reading spec.template: %w", err)
		}
		t := &corev1.PodTemplateSpec{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, t); err != nil {
			return nil, fmt.Errorf("reading spec.template: %w", err)
		}
		return t, nil
	},
	SetTemplate: func(o client.Object, t *corev1.PodTemplateSpec) error {
		u := o.(*unstructured.Unstructured)
		ann := map[string]any{}
		for k, v := range t.Annotations {
			ann[k] = v
		}
		if err := unstructured.SetNestedMap(u.Object, ann, "spec", "template", "metadata", "annotations"); err != nil {
			return err
		}
		containers := make([]any, 0, len(t.Spec.Containers))
		for i := range t.Spec.Containers {
			c, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&t.Spec.Containers[i])
			if err != nil {
				return err
			}
			containers = append(containers, c)
		}
		return unstructured.SetNestedSlice(u.Object, containers, "spec", "template", "spec", "containers")
	},
	Progressing: func(o client.Object) bool {
		phase, _, _ := unstructured.NestedString(o.(*unstructured.Unstructured).Object, "status", "phase")
		return phase == "Progressing"
	},
}

// deploymentProgressing is kubectl rollout status's test: not every replica
// runs the current template yet. A rollout past its progress deadline has
// failed and is not waited for.
func deploymentProgressing(d *appsv1.Deployment) bool {
	if d.Generation > d.Status.ObservedGeneration {
		return true
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
			return false
		}
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	return s.UpdatedReplicas < want || s.Replicas > s.UpdatedReplicas || s.AvailableReplicas < s.UpdatedReplicas
}

func statefulSetProgressing(s *appsv1.StatefulSet) bool {
	if s.Generation > s.Status.ObservedGeneration {
		return true
	}
	if s.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
		return false
	}
	want := int32(1)
	if s.Spec.Replicas != nil {
		want = *s.Spec.Replicas
	}
	st := s.Status
	if ru := s.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil && *ru.Partition > 0 {
		// A partitioned rollout updates the ordinals above the partition only.
		return st.UpdatedReplicas < want-*ru.Partition || st.ReadyReplicas < want
	}
	return st.UpdatedReplicas < want || st.ReadyReplicas < want || st.UpdateRevision != st.CurrentRevision
}

func daemonSetProgressing(d *appsv1.DaemonSet) bool {
	if d.Generation > d.Status.ObservedGeneration {
		return true
	}
	s := d.Status
	return s.UpdatedNumberScheduled < s.DesiredNumberScheduled || s.NumberAvailable < s.DesiredNumberScheduled
}
