package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// InjectionMode says how an injected pod receives its secrets.
// +kubebuilder:validation:Enum=files;secret
type InjectionMode string

const (
	// InjectionModeFiles runs the init-agent, as the pod's own identity, to
	// write the data into an in-memory volume.
	InjectionModeFiles InjectionMode = "files"
	// InjectionModeSecret mounts the Secrets keyhook materialises for the
	// ExternalSecrets; no init container.
	InjectionModeSecret InjectionMode = "secret"
)

// ClusterInjectionPolicySpec selects pods and says what to inject into them.
type ClusterInjectionPolicySpec struct {
	// NamespaceSelector selects the namespaces the policy applies to. Empty
	// selects every namespace (but never kube-system or keyhook's own, which
	// the webhook is not called for).
	// +optional
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn'] ? (has(e.values) && size(e.values) > 0) : (e.operator in ['Exists', 'DoesNotExist'] && (!has(e.values) || size(e.values) == 0)))",message="every matchExpressions operator is In or NotIn with at least one value, or Exists or DoesNotExist with none"
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// PodSelector selects pods by label within those namespaces. Empty
	// selects every pod; so does one that does not parse, in a policy that
	// enforces. The API server refuses an operator without the values it
	// needs, or with values it takes none of; keyhook's validating webhook,
	// which fails open, refuses the rest (invalid keys and values).
	// +optional
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn'] ? (has(e.values) && size(e.values) > 0) : (e.operator in ['Exists', 'DoesNotExist'] && (!has(e.values) || size(e.values) == 0)))",message="every matchExpressions operator is In or NotIn with at least one value, or Exists or DoesNotExist with none"
	PodSelector *metav1.LabelSelector `json:"podSelector,omitempty"`

	// Inject lists ExternalSecrets, resolved in the pod's namespace, that
	// selected pods get by default, in addition to those they name in
	// keyhook.dev/inject.
	// +optional
	// +listType=set
	Inject []string `json:"inject,omitempty"`

	// Mode of injection for pods this policy selects; a pod's
	// keyhook.dev/inject-mode annotation wins. Default: files.
	// +optional
	Mode InjectionMode `json:"mode,omitempty"`

	// Enforce denies selected pods that opt out (keyhook.dev/inject:
	// "false") or whose injection cannot be resolved, and makes the webhook
	// fail closed in the selected namespaces: while keyhook is unreachable,
	// pods there are not admitted at all rather than admitted without secrets.
	// +optional
	Enforce bool `json:"enforce,omitempty"`
}

// ClusterInjectionPolicyStatus reports what the policy applies to.
type ClusterInjectionPolicyStatus struct {
	// Namespaces is the number of namespaces the policy selects.
	// +optional
	Namespaces int `json:"namespaces,omitempty"`

	// Conditions of the policy.
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=keyhook,shortName=cip
// +kubebuilder:printcolumn:name="Enforce",type=boolean,JSONPath=`.spec.enforce`
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Namespaces",type=integer,JSONPath=`.status.namespaces`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// ClusterInjectionPolicy is how a platform team injects secrets across a
// cluster. Policies that select the same pod merge in name order: their
// Inject lists are joined (first occurrence kept), the mode is that of the
// first policy, by name, that sets one, and the pod is enforced if any of
// them enforces.
type ClusterInjectionPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ClusterInjectionPolicySpec   `json:"spec"`
	Status ClusterInjectionPolicyStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// ClusterInjectionPolicyList is a list of ClusterInjectionPolicies.
type ClusterInjectionPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterInjectionPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ClusterInjectionPolicy{}, &ClusterInjectionPolicyList{})
}
