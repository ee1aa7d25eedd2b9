package mutate

import (
	"encoding/json"
	"reflect"
	"strconv"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
)

// Patch returns the JSON patch that turns pod into out, where out is Apply's
// result. Apply changes only a few parts of a pod (annotations, init
// containers, containers' mounts and env, volumes, the pod's security
// context), so the patch sets each changed part whole instead of diffing
// two decoded documents: about half the cost of an admission otherwise
// (gomodules.xyz/jsonpatch.CreatePatch decodes both pods into maps and walks
// them). If anything else differs, it falls back to that diff of raw, the
// pod as the API server sent it, so the patch is right whatever Apply did.
func Patch(raw []byte, pod, out *corev1.Pod) ([]jsonpatch.Operation, error) {
	if !onlyPatchedPartsDiffer(pod, out) {
		return diff(raw, out)
	}
	// reflect.DeepEqual, not equality.Semantic (three times the cost here):
	// out is a deep copy of pod with parts replaced, so what Apply left
	// alone is equal field by field, and a false "changed" would only set a
	// part to what it already is.
	var ops []jsonpatch.Operation
	set := func(path string, old, new any, oldEmpty, empty bool) {
		if (oldEmpty && empty) || reflect.DeepEqual(old, new) {
			return
		}
		if empty {
			ops = append(ops, jsonpatch.NewOperation("remove", path, nil))
			return
		}
		// "add" sets an object member whether or not it exists.
		ops = append(ops, jsonpatch.NewOperation("add", path, new))
	}
	set("/metadata/annotations", pod.Annotations, out.Annotations, len(pod.Annotations) == 0, len(out.Annotations) == 0)
	set("/spec/initContainers", pod.Spec.InitContainers, out.Spec.InitContainers, len(pod.Spec.InitContainers) == 0, len(out.Spec.InitContainers) == 0)
	set("/spec/volumes", pod.Spec.Volumes, out.Spec.Volumes, len(pod.Spec.Volumes) == 0, len(out.Spec.Volumes) == 0)
	set("/spec/securityContext", pod.Spec.SecurityContext, out.Spec.SecurityContext, pod.Spec.SecurityContext == nil, out.Spec.SecurityContext == nil)
	for i := range out.Spec.Containers {
		// "add" at an array index would insert: an element is replaced.
		if !reflect.DeepEqual(&pod.Spec.Containers[i], &out.Spec.Containers[i]) {
			ops = append(ops, jsonpatch.NewOperation("replace", "/spec/containers/"+strconv.Itoa(i), out.Spec.Containers[i]))
		}
	}
	return ops, nil
}

// onlyPatchedPartsDiffer reports whether pod and out are equal but for the
// parts Patch sets whole, with the same number of containers.
func onlyPatchedPartsDiffer(pod, out *corev1.Pod) bool {
	if len(pod.Spec.Containers) != len(out.Spec.Containers) {
		return false
	}
	// Shallow copies: only their own fields are cleared.
	a, b := *pod, *out
	for _, p := range []*corev1.Pod{&a, &b} {
		p.Annotations = nil
		p.Spec.InitContainers = nil
		p.Spec.Volumes = nil
		p.Spec.SecurityContext = nil
		p.Spec.Containers = nil
	}
	return reflect.DeepEqual(&a, &b)
}

func diff(raw []byte, out *corev1.Pod) ([]jsonpatch.Operation, error) {
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	return jsonpatch.CreatePatch(raw, b)
}
