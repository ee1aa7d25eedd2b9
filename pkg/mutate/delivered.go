package mutate

import (
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/keyhook/keyhook/pkg/plan"
)

// NotDelivered returns the names of the ExternalSecrets that pod's spec does
// not deliver as Apply delivers them: in files mode an init container
// keyhook-agent whose plan names the ExternalSecret, in secret mode the
// volume of its Secret (SecretModeVolumeName) mounting the Secret the
// ExternalSecret syncs into, targets[name] (its own name when targets does
// not say), into one of the pod's containers. It reads only the pod's spec,
// never its annotations, which whoever may update the pod can change: the
// containers and volumes of a pod cannot change after it is created, so a
// pod admitted without keyhook cannot be made to look injected.
//
// The agent's image is not checked (the controller, which calls this, is
// not told keyhook's agent images): a pod created before its namespace was
// enforced that runs an init container named keyhook-agent with a valid
// plan of its own passes.
func NotDelivered(pod *corev1.Pod, names []string, targets map[string]string) []string {
	var planned []string
	for _, c := range pod.Spec.InitContainers {
		if c.Name != AgentContainerName {
			continue
		}
		for _, e := range c.Env {
			if e.Name != plan.EnvVar {
				continue
			}
			if p, err := plan.Decode(e.Value); err == nil {
				for _, s := range p.Secrets {
					planned = append(planned, s.Name)
				}
			}
		}
	}
	var missing []string
	for _, name := range names {
		if slices.Contains(planned, name) || secretModeDelivered(pod, name, targets) {
			continue
		}
		missing = append(missing, name)
	}
	return missing
}

// secretModeDelivered reports whether pod mounts the Secret of ExternalSecret
// name as secret mode does: the volume SecretModeVolumeName(name) of the
// Secret targets[name] (else name), mounted by one of its containers.
func secretModeDelivered(pod *corev1.Pod, name string, targets map[string]string) bool {
	secret, vol := name, SecretModeVolumeName(name)
	if t, ok := targets[name]; ok {
		secret = t
	}
	if !slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool {
		return v.Name == vol && v.Secret != nil && v.Secret.SecretName == secret
	}) {
		return false
	}
	return slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool {
		return slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == vol })
	})
}
