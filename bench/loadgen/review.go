package loadgen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/mutate"
	"github.com/keyhook/keyhook/pkg/plan"
)

// uidPlaceholder stands for the request UID in the review template; it has
// the length of a UUID so that every body has the same size.
const uidPlaceholder = "00000000-0000-0000-0000-uidplacehold"

// Review is an AdmissionReview v1 CREATE of one pod, as the API server sends
// it, with a fresh UID spliced in per request.
type Review struct {
	// Pod is the object under review, as sent.
	Pod    *corev1.Pod
	podRaw []byte
	before []byte // body up to the UID
	after  []byte // body after the UID
}

// NewReview builds the review of a CREATE of pod in its namespace.
func NewReview(pod *corev1.Pod) (*Review, error) {
	raw, err := json.Marshal(pod)
	if err != nil {
		return nil, err
	}
	ar := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:             types.UID(uidPlaceholder),
			Kind:            metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:        metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			RequestKind:     &metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			RequestResource: &metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace:       pod.Namespace,
			Operation:       admissionv1.Create,
			UserInfo:        authenticationv1.UserInfo{Username: "system:serviceaccount:kube-system:replicaset-controller", UID: "5b1d3c2e-8f4a-4e6b-9d7c-1a2b3c4d5e6f", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}},
			Object:          runtime.RawExtension{Raw: raw},
			DryRun:          new(bool),
			Options:         runtime.RawExtension{Raw: []byte(`{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}`)},
		},
	}
	body, err := json.Marshal(ar)
	if err != nil {
		return nil, err
	}
	before, after, ok := bytes.Cut(body, []byte(uidPlaceholder))
	if !ok {
		return nil, fmt.Errorf("review template lacks the UID placeholder")
	}
	return &Review{Pod: pod, podRaw: raw, before: before, after: after}, nil
}

// Body returns the review with uid, appended to buf[:0].
func (r *Review) Body(buf []byte, uid string) []byte {
	buf = append(buf[:0], r.before...)
	buf = append(buf, uid...)
	return append(buf, r.after...)
}

// Size is the length of a review body.
func (r *Review) Size() int { return len(r.before) + len(uidPlaceholder) + len(r.after) }

// Checker validates admission responses: the UID matches, the pod is
// allowed, the patch is a JSONPatch that applies to the pod under review and
// yields the injection of wantSecrets. Checking a patch means applying it and
// decoding the result, which costs more CPU than the webhook spends; the
// client shares the cores with the server, so a patch byte-identical to one
// already checked is accepted without applying it again. Patches whose
// operations come in another order are distinct and checked in full.
type Checker struct {
	Review      *Review
	WantSecrets []string
	checked     map[string]struct{}
}

// NewChecker returns a Checker for responses to r.
func NewChecker(r *Review, wantSecrets []string) *Checker {
	return &Checker{Review: r, WantSecrets: wantSecrets, checked: map[string]struct{}{}}
}

// Distinct is the number of distinct patches checked in full.
func (c *Checker) Distinct() int { return len(c.checked) }

// Check validates one response body to the request with uid. It is not safe
// for concurrent use.
func (c *Checker) Check(body []byte, uid string) error {
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &ar); err != nil {
		return fmt.Errorf("decoding the AdmissionReview response: %w", err)
	}
	resp := ar.Response
	switch {
	case resp == nil:
		return fmt.Errorf("AdmissionReview has no response")
	case string(resp.UID) != uid:
		return fmt.Errorf("response UID %q answers another request than %q", resp.UID, uid)
	case !resp.Allowed:
		msg := ""
		if resp.Result != nil {
			msg = resp.Result.Message
		}
		return fmt.Errorf("pod not allowed: %s", msg)
	case resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch:
		return fmt.Errorf("response has no JSONPatch")
	case len(resp.Patch) == 0:
		return fmt.Errorf("response has an empty patch")
	}
	if _, ok := c.checked[string(resp.Patch)]; ok {
		return nil
	}
	if err := c.checkPatch(resp.Patch); err != nil {
		return err
	}
	c.checked[string(resp.Patch)] = struct{}{}
	return nil
}

func (c *Checker) checkPatch(raw []byte) error {
	patch, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		return fmt.Errorf("decoding the patch: %w", err)
	}
	out, err := patch.Apply(c.Review.podRaw)
	if err != nil {
		return fmt.Errorf("applying the patch to the pod: %w", err)
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(out, pod); err != nil {
		return fmt.Errorf("decoding the patched pod: %w", err)
	}
	return CheckInjected(c.Review.Pod, pod, c.WantSecrets)
}

// CheckInjected checks that got is before with keyhook's injection of
// secrets in files mode: the agent first among the init containers with a
// plan naming exactly secrets, the in-memory secret volume, a read-only
// mount of it in every other container, the status annotation, and nothing
// of before lost.
func CheckInjected(before, got *corev1.Pod, secrets []string) error {
	if len(got.Spec.InitContainers) != len(before.Spec.InitContainers)+1 || got.Spec.InitContainers[0].Name != mutate.AgentContainerName {
		return fmt.Errorf("init containers of the patched pod are not %s followed by the pod's own", mutate.AgentContainerName)
	}
	agent := got.Spec.InitContainers[0]
	var encoded string
	for _, e := range agent.Env {
		if e.Name == plan.EnvVar {
			encoded = e.Value
		}
	}
	p, err := plan.Decode(encoded)
	if err != nil {
		return fmt.Errorf("agent plan: %w", err)
	}
	var names []string
	for _, s := range p.Secrets {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, secrets) {
		return fmt.Errorf("agent plan injects %v, want %v", names, secrets)
	}
	if got.Annotations[annotations.Status] != annotations.StatusInjected {
		return fmt.Errorf("patched pod lacks %s: %s", annotations.Status, annotations.StatusInjected)
	}
	vol := -1
	for i, v := range got.Spec.Volumes {
		if v.Name == mutate.SecretsVolumeName {
			vol = i
		}
	}
	if vol < 0 || got.Spec.Volumes[vol].EmptyDir == nil || got.Spec.Volumes[vol].EmptyDir.Medium != corev1.StorageMediumMemory {
		return fmt.Errorf("patched pod lacks the in-memory volume %s", mutate.SecretsVolumeName)
	}
	if len(got.Spec.Volumes) < len(before.Spec.Volumes)+1 || len(got.Spec.Containers) != len(before.Spec.Containers) {
		return fmt.Errorf("patched pod lost volumes or containers")
	}
	for i, c := range got.Spec.Containers {
		if c.Name != before.Spec.Containers[i].Name || len(c.Env) != len(before.Spec.Containers[i].Env) {
			return fmt.Errorf("container %s changed beyond its mounts", c.Name)
		}
		mounted := false
		for _, m := range c.VolumeMounts {
			if m.Name == mutate.SecretsVolumeName && m.ReadOnly {
				mounted = true
			}
		}
		if !mounted {
			return fmt.Errorf("container %s lacks a read-only mount of %s", c.Name, mutate.SecretsVolumeName)
		}
	}
	return nil
}
