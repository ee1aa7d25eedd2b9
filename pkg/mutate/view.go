package mutate

import (
	"errors"
	"fmt"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	corev1 "k8s.io/api/core/v1"

	"github.com/keyhook/keyhook/pkg/annotations"
)

// PodView is what keyhook's admission reads of a pod: what decides whether
// and what to inject (its metadata's annotations and labels) and what Apply
// reads to inject it (names, mounts, volumes, the users it runs as). The
// webhook decodes the pod the API server sends into a PodView alone, which
// costs a fraction of a whole corev1.Pod; the rest of the pod is skipped.
type PodView struct {
	Metadata PodViewMeta `json:"metadata"`
	Spec     PodViewSpec `json:"spec"`
}

// PodViewMeta is the part of a pod's metadata keyhook reads.
type PodViewMeta struct {
	Name         string            `json:"name"`
	GenerateName string            `json:"generateName"`
	Namespace    string            `json:"namespace"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
}

// PodViewSpec is the part of a pod's spec keyhook reads.
type PodViewSpec struct {
	// NodeName is the node a pod is bound to at creation: a mirror pod's,
	// whose kubelet alone may create it.
	NodeName        string                 `json:"nodeName"`
	InitContainers  []ContainerView        `json:"initContainers"`
	Containers      []ContainerView        `json:"containers"`
	Volumes         []VolumeView           `json:"volumes"`
	SecurityContext PodSecurityContextView `json:"securityContext"`
}

// ContainerView is what keyhook reads of a container.
type ContainerView struct {
	Name            string              `json:"name"`
	VolumeMounts    []VolumeMountView   `json:"volumeMounts"`
	SecurityContext SecurityContextView `json:"securityContext"`
}

// VolumeMountView is what keyhook reads of a volume mount.
type VolumeMountView struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
}

// VolumeView is what keyhook reads of a volume.
type VolumeView struct {
	Name string `json:"name"`
}

// PodSecurityContextView is what keyhook reads of a pod's security context;
// zero when the pod has none.
type PodSecurityContextView struct {
	RunAsUser OptionalInt64 `json:"runAsUser"`
	FSGroup   OptionalInt64 `json:"fsGroup"`
}

// SecurityContextView is what keyhook reads of a container's security
// context; zero when the container has none.
type SecurityContextView struct {
	RunAsUser OptionalInt64 `json:"runAsUser"`
}

// OptionalInt64 is an integer a pod may leave out (an *int64 of
// corev1.Pod), without the allocation of a pointer per field decoded.
type OptionalInt64 struct {
	Value int64
	// Set is whether the pod has it (not left out, not null).
	Set bool
}

// optionalInt64 is the OptionalInt64 of p.
func optionalInt64(p *int64) OptionalInt64 {
	if p == nil {
		return OptionalInt64{}
	}
	return OptionalInt64{Value: *p, Set: true}
}

// UnmarshalJSONFrom implements json.UnmarshalerFrom.
func (o *OptionalInt64) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	if dec.PeekKind() == 'n' {
		*o = OptionalInt64{}
		return dec.SkipValue()
	}
	o.Set = true
	return jsonv2.UnmarshalDecode(dec, &o.Value)
}

// DecodePod decodes a pod as the API server sends it to an admission webhook
// into a PodView. It is strict where a lax reading could let the webhook see
// another pod than the API server admits: member names match case-sensitively
// (as the API server's decoder, sigs.k8s.io/json, does: "Labels" is not
// "labels" and is ignored), and a duplicate member name anywhere in the
// document, or invalid UTF-8, is an error (the API server encodes the pod it
// sends with neither, so such a document is not the API server's; a decoder
// that took the first or merged both could decide on other labels or
// annotations than the pod is stored with). Unknown members are skipped.
func DecodePod(raw []byte) (*PodView, error) {
	v := &PodView{}
	if err := jsonv2.Unmarshal(raw, v, DecodeOptions); err != nil {
		return nil, fmt.Errorf("decoding the pod: %w", err)
	}
	return v, nil
}

// DecodeOptions are DecodePod's options, for a decoder that reads a PodView
// as part of a larger document (the AdmissionReview): go-json-experiment/json
// (encoding/json/v2) matches names case-sensitively and refuses duplicate
// names and invalid UTF-8 by default; said here so that no change of
// defaults loosens it.
var DecodeOptions = jsonv2.JoinOptions(
	jsonv2.MatchCaseInsensitiveNames(false),
	jsontext.AllowDuplicateNames(false),
	jsontext.AllowInvalidUTF8(false),
)

// ViewOf is the PodView of a typed pod, as DecodePod reads it from the pod's
// JSON; the view shares the pod's maps.
func ViewOf(pod *corev1.Pod) *PodView {
	v := &PodView{Metadata: PodViewMeta{
		Name:         pod.Name,
		GenerateName: pod.GenerateName,
		Namespace:    pod.Namespace,
		Labels:       pod.Labels,
		Annotations:  pod.Annotations,
	}}
	containers := func(cs []corev1.Container) []ContainerView {
		if cs == nil {
			return nil
		}
		out := make([]ContainerView, len(cs))
		for i, c := range cs {
			out[i].Name = c.Name
			if c.VolumeMounts != nil {
				out[i].VolumeMounts = make([]VolumeMountView, len(c.VolumeMounts))
				for j, m := range c.VolumeMounts {
					out[i].VolumeMounts[j] = VolumeMountView{Name: m.Name, MountPath: m.MountPath}
				}
			}
			if c.SecurityContext != nil {
				out[i].SecurityContext.RunAsUser = optionalInt64(c.SecurityContext.RunAsUser)
			}
		}
		return out
	}
	v.Spec.NodeName = pod.Spec.NodeName
	v.Spec.InitContainers = containers(pod.Spec.InitContainers)
	v.Spec.Containers = containers(pod.Spec.Containers)
	if pod.Spec.Volumes != nil {
		v.Spec.Volumes = make([]VolumeView, len(pod.Spec.Volumes))
		for i, vol := range pod.Spec.Volumes {
			v.Spec.Volumes[i].Name = vol.Name
		}
	}
	if sc := pod.Spec.SecurityContext; sc != nil {
		v.Spec.SecurityContext = PodSecurityContextView{RunAsUser: optionalInt64(sc.RunAsUser), FSGroup: optionalInt64(sc.FSGroup)}
	}
	return v
}

// Fresh reports whether the pod carries none of the names keyhook adds or
// reserves (its init container, its volumes, mounts of them): a pod keyhook
// has not injected. Ops patches only such pods; any other (one the API
// server sends again after another webhook changed it, or one that uses
// keyhook's names) goes through Apply and Patch, which handle every case.
func (v *PodView) Fresh() bool {
	for _, cs := range [][]ContainerView{v.Spec.InitContainers, v.Spec.Containers} {
		for _, c := range cs {
			if c.Name == AgentContainerName {
				return false
			}
			for _, m := range c.VolumeMounts {
				if isKeyhookVolume(m.Name) {
					return false
				}
			}
		}
	}
	for _, vol := range v.Spec.Volumes {
		if isKeyhookVolume(vol.Name) {
			return false
		}
	}
	return true
}

// Injected reports whether the pod says keyhook injected it.
func (v *PodView) Injected() bool {
	return v.Metadata.Annotations[annotations.Status] == annotations.StatusInjected
}

func isKeyhookVolume(name string) bool {
	return name == SecretsVolumeName || name == TokenVolumeName || isSecretModeVolume(name)
}

// ErrNotFresh is Ops's answer for a pod that is not Fresh.
var ErrNotFresh = errors.New("the pod carries keyhook's names; use Apply and Patch")
