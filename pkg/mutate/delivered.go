package mutate

import (
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/keyhook/keyhook/pkg/plan"
)

// NotDelivered returns the names of the ExternalSecrets that pod's spec does
// not deliver as Apply delivers them: in files mode an init container
// keyhook-agent whose plan names the ExternalSecret, in secret mode the
// volume of its Secret (SecretModeVolumeName). It reads only the pod's spec,
// never its annotations, which whoever may update the pod can change: the
// containers and volumes of a pod cannot change after it is created, so a
// pod admitted without keyhook cannot be made to look injected.
func NotDelivered(pod *corev1.Pod, names []string) []string {
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
		if slices.Contains(planned, name) || slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool {
			return v.Name == SecretModeVolumeName(name) && v.Secret != nil
		}) {
			continue
		}
		missing = append(missing, name)
	}
	return missing
}
