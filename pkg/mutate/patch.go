package mutate

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
)

// Patch returns the JSON patch that turns pod into out, where out is Apply's
// result: the smallest that does it, as vault-k8s sends, since the API
// server decodes, applies and stores every byte of it. Apply changes only a
// few parts of a pod (annotations, init containers, containers' mounts and
// env, volumes, the pod's security context) and mostly appends to them, so
// the patch adds single annotation keys, inserts the agent, and appends to
// lists ("/-"), derived from the typed change; a part changed otherwise is
// set whole. If anything else differs, it falls back to a diff of raw, the
// pod as the API server sent it, so the patch is right whatever Apply did.
func Patch(raw []byte, pod, out *corev1.Pod) ([]jsonpatch.Operation, error) {
	if !onlyPatchedPartsDiffer(pod, out) {
		return diff(raw, out)
	}
	// reflect.DeepEqual, not equality.Semantic (three times the cost here):
	// out is a deep copy of pod with parts changed, so what Apply left
	// alone is equal field by field, and a false "changed" would only set a
	// part to what it already is.
	var ops []jsonpatch.Operation
	ops = patchMap(ops, "/metadata/annotations", pod.Annotations, out.Annotations)
	ops = patchInitContainers(ops, pod.Spec.InitContainers, out.Spec.InitContainers)
	ops = patchList(ops, "/spec/volumes", pod.Spec.Volumes, out.Spec.Volumes)
	if !reflect.DeepEqual(pod.Spec.SecurityContext, out.Spec.SecurityContext) {
		if out.Spec.SecurityContext == nil {
			ops = append(ops, jsonpatch.NewOperation("remove", "/spec/securityContext", nil))
		} else {
			// "add" sets an object member whether or not it exists.
			ops = append(ops, jsonpatch.NewOperation("add", "/spec/securityContext", out.Spec.SecurityContext))
		}
	}
	for i := range out.Spec.Containers {
		ops = patchContainer(ops, "/spec/containers/"+strconv.Itoa(i), &pod.Spec.Containers[i], &out.Spec.Containers[i])
	}
	return ops, nil
}

// patchMap adds, changes and removes single keys of a string map.
func patchMap(ops []jsonpatch.Operation, path string, old, new map[string]string) []jsonpatch.Operation {
	switch {
	case len(old) == 0 && len(new) == 0:
		return ops
	case len(old) == 0:
		return append(ops, jsonpatch.NewOperation("add", path, new))
	case len(new) == 0:
		return append(ops, jsonpatch.NewOperation("remove", path, nil))
	}
	for _, k := range slices.Sorted(maps.Keys(old)) {
		if _, ok := new[k]; !ok {
			ops = append(ops, jsonpatch.NewOperation("remove", path+"/"+escape(k), nil))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(new)) {
		if v, ok := old[k]; !ok || v != new[k] {
			ops = append(ops, jsonpatch.NewOperation("add", path+"/"+escape(k), new[k]))
		}
	}
	return ops
}

// patchList appends what new has beyond old when old is its beginning, and
// sets the list whole otherwise.
func patchList[T any](ops []jsonpatch.Operation, path string, old, new []T) []jsonpatch.Operation {
	switch {
	case len(old) == 0 && len(new) == 0:
		return ops
	case len(new) == 0:
		return append(ops, jsonpatch.NewOperation("remove", path, nil))
	case len(old) == 0:
		return append(ops, jsonpatch.NewOperation("add", path, new))
	case len(new) >= len(old) && reflect.DeepEqual(old, new[:len(old)]):
		for _, e := range new[len(old):] {
			ops = append(ops, jsonpatch.NewOperation("add", path+"/-", e))
		}
		return ops
	}
	return append(ops, jsonpatch.NewOperation("add", path, new))
}

// patchInitContainers inserts the agent before the pod's init containers and
// appends to theirs what Apply appended; any other change sets the list
// whole.
func patchInitContainers(ops []jsonpatch.Operation, old, new []corev1.Container) []jsonpatch.Operation {
	const path = "/spec/initContainers"
	inserted := len(new) == len(old)+1 && new[0].Name == AgentContainerName &&
		!slices.ContainsFunc(old, func(c corev1.Container) bool { return c.Name == AgentContainerName })
	if !inserted {
		return patchList(ops, path, old, new)
	}
	if len(old) == 0 {
		return append(ops, jsonpatch.NewOperation("add", path, new))
	}
	// "add" at an index inserts; the pod's own init containers move up one.
	ops = append(ops, jsonpatch.NewOperation("add", path+"/0", new[0]))
	for i := range old {
		ops = patchContainer(ops, path+"/"+strconv.Itoa(i+1), &old[i], &new[i+1])
	}
	return ops
}

// patchContainer appends to a container's mounts and env what Apply
// appended, or replaces the container when anything else changed.
func patchContainer(ops []jsonpatch.Operation, path string, old, new *corev1.Container) []jsonpatch.Operation {
	if reflect.DeepEqual(old, new) {
		return ops
	}
	a, b := *old, *new
	for _, c := range []*corev1.Container{&a, &b} {
		c.VolumeMounts, c.Env, c.EnvFrom = nil, nil, nil
	}
	if !reflect.DeepEqual(&a, &b) {
		// "add" at an array index would insert: an element is replaced.
		return append(ops, jsonpatch.NewOperation("replace", path, new))
	}
	ops = patchList(ops, path+"/volumeMounts", old.VolumeMounts, new.VolumeMounts)
	ops = patchList(ops, path+"/env", old.Env, new.Env)
	return patchList(ops, path+"/envFrom", old.EnvFrom, new.EnvFrom)
}

// escape escapes a JSON pointer token (RFC 6901).
func escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
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
