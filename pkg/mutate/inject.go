package mutate

import (
	"path"
	"slices"
	"strconv"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/plan"
	"github.com/keyhook/keyhook/pkg/resolve"
)

// change is what an injection adds to a pod without keyhook's parts, all of
// it appended: Apply makes it on a typed copy of the pod, Ops records it as
// JSON patch operations. One function (build) decides it for both, so the
// patch is the typed change and never disagrees with Apply.
type change struct {
	// agent is inserted before the pod's init containers; nil in secret
	// mode.
	agent *corev1.Container
	// volumes are appended to the pod's volumes.
	volumes []corev1.Volume
	// mounts are appended to the mounts of every init container and
	// container of the pod (not the agent's).
	mounts []corev1.VolumeMount
}

// build decides the change that injects req into the pod v, which has none of
// keyhook's parts (removeInjection has run, or v is Fresh). Its errors are
// Apply's.
func build(v *PodView, cfg Config, req *Request, sources []*resolve.Source) (*change, error) {
	for _, cs := range [][]ContainerView{v.Spec.InitContainers, v.Spec.Containers} {
		for _, c := range cs {
			for _, m := range c.VolumeMounts {
				// Cleaned: the runtime mounts "/etc//secrets/" where "/etc/secrets" is.
				if mp := path.Clean(m.MountPath); mp == req.MountPath || isUnder(mp, req.MountPath) {
					return nil, podErrorf("container %q mounts volume %q at %q, which overlaps keyhook's %q; set annotation %s to a free directory",
						c.Name, m.Name, m.MountPath, req.MountPath, annotations.MountPath)
				}
			}
		}
	}
	fsGroup := v.Spec.SecurityContext.FSGroup.Set

	if req.Mode == v1alpha1.InjectionModeSecret {
		return buildSecretMode(fsGroup, req, sources)
	}

	p, tokenSources, env, err := buildPlan(fsGroup, req, sources)
	if err != nil {
		return nil, err
	}
	encoded, err := p.Encode()
	if err != nil {
		return nil, err
	}
	ch := &change{volumes: make([]corev1.Volume, 0, 2)}
	ch.volumes = append(ch.volumes, corev1.Volume{
		Name:         SecretsVolumeName,
		VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}},
	})
	// The token volume is there even when no store needs a token (an empty
	// one then): it keeps the pod's API token out of the agent (TokenDir).
	tokenVolume := corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}
	if len(tokenSources) > 0 {
		tokenVolume = corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources:     tokenSources,
			DefaultMode: ptr.To[int32](0o444),
		}}
	}
	ch.volumes = append(ch.volumes, corev1.Volume{Name: TokenVolumeName, VolumeSource: tokenVolume})
	ch.agent = &corev1.Container{
		Name:            AgentContainerName,
		Image:           cfg.agentImage(p),
		ImagePullPolicy: cfg.AgentImagePullPolicy,
		Args:            slices.Clone(cfg.AgentArgs),
		Env:             append([]corev1.EnvVar{{Name: plan.EnvVar, Value: encoded}}, env...),
		VolumeMounts: []corev1.VolumeMount{
			{Name: SecretsVolumeName, MountPath: req.MountPath},
			{Name: TokenVolumeName, MountPath: TokenDir, ReadOnly: true},
		},
		Resources:       agentResources,
		SecurityContext: agentSecurityContext(v),
		// The agent's one-line failure reason shows in kubectl describe.
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	ch.mounts = []corev1.VolumeMount{{Name: SecretsVolumeName, MountPath: req.MountPath, ReadOnly: true}}
	return ch, nil
}

// agentResources are DefaultAgentResources, made once: a patch only encodes
// them (Apply gives each pod a copy).
var agentResources = DefaultAgentResources()

// applyTo makes the change on pod, which has none of keyhook's parts.
func (ch *change) applyTo(pod *corev1.Pod) {
	pod.Spec.Volumes = append(pod.Spec.Volumes, ch.volumes...)
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			cs[i].VolumeMounts = append(cs[i].VolumeMounts, ch.mounts...)
		}
	}
	if ch.agent != nil {
		agent := *ch.agent
		// The pod's own, not what Ops shares between patches.
		agent.Resources = *agent.Resources.DeepCopy()
		agent.SecurityContext = agent.SecurityContext.DeepCopy()
		// First, so that the pod's own init containers can use the secrets too.
		pod.Spec.InitContainers = append([]corev1.Container{agent}, pod.Spec.InitContainers...)
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[annotations.Status] = annotations.StatusInjected
}

// Paths of the JSON patch.
const (
	statusAnnotationPath = "/metadata/annotations/keyhook.dev~1status"
	annotationsPath      = "/metadata/annotations"
	initContainersPath   = "/spec/initContainers"
	containersPath       = "/spec/containers"
	volumesPath          = "/spec/volumes"
)

// Ops returns the JSON patch that injects req into the pod v, the same pod
// Apply returns, as the operations the change is made of, recorded rather
// than found by comparing pods: it adds the status annotation key, inserts
// the agent at /spec/initContainers/0 and appends ("/-") the volumes and
// every container's mount; a list or map the pod does not have yet is added
// whole. It is the smallest patch that does the job, the one vault-k8s
// sends. v must be Fresh (else ErrNotFresh): a pod that carries keyhook's
// names needs Apply, which removes and re-adds them, and Patch.
func Ops(v *PodView, cfg Config, req *Request, sources []*resolve.Source) ([]jsonpatch.Operation, error) {
	if !v.Fresh() {
		return nil, ErrNotFresh
	}
	ch, err := build(v, cfg, req, sources)
	if err != nil {
		return nil, err
	}
	n := 1 + len(ch.volumes) + (len(v.Spec.InitContainers)+len(v.Spec.Containers))*len(ch.mounts)
	if ch.agent != nil {
		n++
	}
	ops := make([]jsonpatch.Operation, 0, n)
	switch {
	case len(v.Metadata.Annotations) == 0:
		ops = append(ops, jsonpatch.Operation{Operation: "add", Path: annotationsPath,
			Value: map[string]string{annotations.Status: annotations.StatusInjected}})
	case !v.Injected():
		ops = append(ops, jsonpatch.Operation{Operation: "add", Path: statusAnnotationPath, Value: annotations.StatusInjected})
	}
	// The pod's own init containers move up one when the agent is inserted.
	initIndex := 0
	if ch.agent != nil {
		if len(v.Spec.InitContainers) == 0 {
			ops = append(ops, jsonpatch.Operation{Operation: "add", Path: initContainersPath, Value: []corev1.Container{*ch.agent}})
		} else {
			// "add" at an index inserts.
			ops = append(ops, jsonpatch.Operation{Operation: "add", Path: initContainersPath + "/0", Value: ch.agent})
			initIndex = 1
		}
	}
	for i, c := range v.Spec.InitContainers {
		ops = appendMounts(ops, initContainersPath, initIndex+i, len(c.VolumeMounts), ch.mounts)
	}
	ops = appendOps(ops, volumesPath, volumesPath+"/-", len(v.Spec.Volumes), ch.volumes)
	for i, c := range v.Spec.Containers {
		ops = appendMounts(ops, containersPath, i, len(c.VolumeMounts), ch.mounts)
	}
	return ops, nil
}

// appendMounts appends mounts to the n mounts of container i of the list at
// path.
func appendMounts(ops []jsonpatch.Operation, path string, i, n int, mounts []corev1.VolumeMount) []jsonpatch.Operation {
	if n == 0 {
		return appendOps(ops, path+"/"+strconv.Itoa(i)+"/volumeMounts", "", 0, mounts)
	}
	return appendOps(ops, "", path+"/"+strconv.Itoa(i)+"/volumeMounts/-", n, mounts)
}

// appendOps appends elems to the list at path, which has n elements: one
// add at appendPath (path + "/-") per element, or the list whole when there
// is none (a JSON patch cannot append to a list that is not there).
func appendOps[T any](ops []jsonpatch.Operation, path, appendPath string, n int, elems []T) []jsonpatch.Operation {
	switch {
	case len(elems) == 0:
		return ops
	case n == 0:
		return append(ops, jsonpatch.Operation{Operation: "add", Path: path, Value: elems})
	}
	for i := range elems {
		ops = append(ops, jsonpatch.Operation{Operation: "add", Path: appendPath, Value: &elems[i]})
	}
	return ops
}
