package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SecretStoreKind is the kind of store an ExternalSecret refers to.
// +kubebuilder:validation:Enum=SecretStore;ClusterSecretStore
type SecretStoreKind string

const (
	// SecretStoreKindNamespaced refers to a SecretStore in the ExternalSecret's namespace.
	SecretStoreKindNamespaced SecretStoreKind = "SecretStore"
	// SecretStoreKindCluster refers to a ClusterSecretStore.
	SecretStoreKindCluster SecretStoreKind = "ClusterSecretStore"
)

// SecretStoreRef names the store an ExternalSecret reads from.
type SecretStoreRef struct {
	// Name of the store.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`

	// Kind of the store.
	// +kubebuilder:default=SecretStore
	// +optional
	Kind SecretStoreKind `json:"kind,omitempty"`
}

// RemoteRef points at one secret in the provider.
type RemoteRef struct {
	// Key is the path of the secret in the provider, relative to the store's
	// mount (for Vault: "app/db" reads secret/data/app/db on KV v2).
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`

	// Property selects one field of a JSON secret (for Vault, one field of the
	// KV secret); nested fields are addressed with dots ("db.password"). Empty
	// means the whole secret: for Vault, its fields encoded as a JSON object.
	// +optional
	Property string `json:"property,omitempty"`

	// Version of the secret to read. Empty means the current one. Vault
	// KV v2: a version number; AWS Secrets Manager: a version stage
	// (AWSCURRENT, AWSPREVIOUS, ...) or a version id; Google Secret
	// Manager: a version number or "latest".
	// +kubebuilder:validation:Pattern=`^[-_.:/a-zA-Z0-9]*$`
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Version string `json:"version,omitempty"`
}

// ExternalSecretData maps one remote value to one key of the target.
type ExternalSecretData struct {
	// SecretKey is the key in the target Secret and the file name in the
	// pod's secret directory.
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +kubebuilder:validation:MaxLength=253
	SecretKey string `json:"secretKey"`

	// RemoteRef is the value to read.
	RemoteRef RemoteRef `json:"remoteRef"`
}

// ExternalSecretExtract expands every field of one remote secret into keys.
type ExternalSecretExtract struct {
	// Key is the path of the secret in the provider.
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`

	// Property selects a nested object to expand instead of the whole secret.
	// +optional
	Property string `json:"property,omitempty"`

	// Version of the secret to read. Empty means the current one; see
	// RemoteRef.Version.
	// +kubebuilder:validation:Pattern=`^[-_.:/a-zA-Z0-9]*$`
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Version string `json:"version,omitempty"`
}

// ExternalSecretFind selects remote secrets by name: every secret whose name
// starts with path and, when set, matches name.regexp and carries tags.
// Each becomes one key, named by its name after path with "/" turned into
// "_". At most 500 secrets.
type ExternalSecretFind struct {
	// Path is a name prefix: a Secrets Manager or Google secret name prefix,
	// a Parameter Store path or a Vault KV path (both read recursively),
	// e.g. "team-a/".
	// +kubebuilder:validation:MinLength=1
	Path string `json:"path"`

	// Name selects, among the secrets under path, those whose full name
	// matches a regular expression (Vault, Google Secret Manager).
	// +optional
	Name *FindName `json:"name,omitempty"`

	// Tags selects secrets carrying all these labels with these values
	// (Google Secret Manager labels).
	// +optional
	Tags map[string]string `json:"tags,omitempty"`
}

// FindName matches secret names.
type FindName struct {
	// RegExp is a regular expression (RE2 syntax) matched against the full
	// name, anywhere in it unless anchored with ^ and $.
	// +kubebuilder:validation:MinLength=1
	RegExp string `json:"regexp"`
}

// ExternalSecretDataFrom reads many keys at once.
// +kubebuilder:validation:MinProperties=1
// +kubebuilder:validation:MaxProperties=1
type ExternalSecretDataFrom struct {
	// Extract expands the fields of one remote secret into keys.
	// +optional
	Extract *ExternalSecretExtract `json:"extract,omitempty"`

	// Find reads every remote secret whose name matches, one key per
	// secret (Vault, AWS Secrets Manager and SSM Parameter Store, Google
	// Secret Manager).
	// +optional
	Find *ExternalSecretFind `json:"find,omitempty"`
}

// CreationPolicy says how the target Secret is owned.
// +kubebuilder:validation:Enum=Owner;Orphan;Merge;None
type CreationPolicy string

const (
	// CreationPolicyOwner creates the Secret with an owner reference to the ExternalSecret.
	CreationPolicyOwner CreationPolicy = "Owner"
	// CreationPolicyOrphan creates the Secret without an owner reference.
	CreationPolicyOrphan CreationPolicy = "Orphan"
	// CreationPolicyMerge writes only keyhook's keys into an existing Secret.
	CreationPolicyMerge CreationPolicy = "Merge"
	// CreationPolicyNone creates no Secret: the data reaches injected pods only.
	CreationPolicyNone CreationPolicy = "None"
)

// DeletionPolicy says what happens to the target Secret when the remote data is gone.
// +kubebuilder:validation:Enum=Retain;Delete
type DeletionPolicy string

const (
	// DeletionPolicyRetain keeps the Secret.
	DeletionPolicyRetain DeletionPolicy = "Retain"
	// DeletionPolicyDelete deletes the Secret.
	DeletionPolicyDelete DeletionPolicy = "Delete"
)

// ExternalSecretTarget describes the Secret that keyhook materialises.
type ExternalSecretTarget struct {
	// Name of the Secret. Defaults to the ExternalSecret's name.
	// +optional
	Name string `json:"name,omitempty"`

	// CreationPolicy says how the Secret is owned.
	// +kubebuilder:default=Owner
	// +optional
	CreationPolicy CreationPolicy `json:"creationPolicy,omitempty"`

	// DeletionPolicy says what happens to the Secret when the remote data is gone.
	// +kubebuilder:default=Retain
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`

	// Template shapes the Secret: its type, extra labels and annotations, and
	// data rendered from the fetched values. Never changes metadata.name.
	// +optional
	Template *ExternalSecretTemplate `json:"template,omitempty"`
}

// TemplateMergePolicy says how templated data combines with fetched data.
// +kubebuilder:validation:Enum=Replace;Merge
type TemplateMergePolicy string

const (
	// TemplateMergeReplace writes only the templated keys (when template.data is set).
	TemplateMergeReplace TemplateMergePolicy = "Replace"
	// TemplateMergeMerge writes the fetched keys and the templated keys; templated win.
	TemplateMergeMerge TemplateMergePolicy = "Merge"
)

// ExternalSecretTemplate shapes the materialised Secret.
type ExternalSecretTemplate struct {
	// Type of the Secret, e.g. kubernetes.io/dockerconfigjson. Default Opaque.
	// +optional
	Type corev1.SecretType `json:"type,omitempty"`

	// Metadata adds labels and annotations to the Secret.
	// +optional
	Metadata ExternalSecretTemplateMetadata `json:"metadata,omitempty"`

	// Data maps Secret keys to Go text/template strings over the fetched
	// values: {{ .password }}, with b64enc, b64dec, toJson, fromJson, upper,
	// lower, trim and pemBlocks "CERTIFICATE" available.
	// +optional
	Data map[string]string `json:"data,omitempty"`

	// MergePolicy says whether the fetched keys are written beside the
	// templated ones (Merge) or not (Replace).
	// +kubebuilder:default=Replace
	// +optional
	MergePolicy TemplateMergePolicy `json:"mergePolicy,omitempty"`
}

// ExternalSecretTemplateMetadata is added to the Secret's metadata.
type ExternalSecretTemplateMetadata struct {
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ExternalSecretSpec says what to fetch and where it goes.
// +kubebuilder:validation:XValidation:rule="has(self.data) || has(self.dataFrom)",message="set data or dataFrom: an ExternalSecret must read at least one value"
type ExternalSecretSpec struct {
	// SecretStoreRef names the store to read from.
	SecretStoreRef SecretStoreRef `json:"secretStoreRef"`

	// RefreshInterval is how often the data is read again. 0 reads it once.
	// +kubebuilder:default="1h"
	// +optional
	RefreshInterval *metav1.Duration `json:"refreshInterval,omitempty"`

	// Target describes the Secret keyhook materialises.
	// +optional
	Target ExternalSecretTarget `json:"target,omitempty"`

	// Data maps remote values to keys, one by one.
	// +listType=map
	// +listMapKey=secretKey
	// +optional
	Data []ExternalSecretData `json:"data,omitempty"`

	// DataFrom reads many keys at once.
	// +optional
	DataFrom []ExternalSecretDataFrom `json:"dataFrom,omitempty"`
}

// ExternalSecretConditionType is a condition type of an ExternalSecret.
const (
	// ConditionReady is true when the target holds the current data.
	ConditionReady = "Ready"
)

// ExternalSecretStatus reports the last sync.
type ExternalSecretStatus struct {
	// Conditions of the ExternalSecret.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// RefreshTime is when a sync last changed something: the Secret's
	// content, the remote versions, the Ready condition or the synced
	// generation. A refresh that finds everything as it was writes nothing,
	// not even this; when the data was last read is the controller's metric
	// keyhook_externalsecret_last_refresh_timestamp_seconds (and
	// keyhook_externalsecret_last_sync_success_timestamp_seconds).
	// +optional
	RefreshTime *metav1.Time `json:"refreshTime,omitempty"`

	// ForceSync is the value of the keyhook.dev/force-sync annotation at
	// the last sync; a new value syncs at once.
	// +optional
	ForceSync string `json:"forceSync,omitempty"`

	// SyncedResourceVersion is the generation of the spec last synced.
	// +optional
	SyncedResourceVersion string `json:"syncedResourceVersion,omitempty"`

	// Versions are the remote versions seen at the last sync, by remote key
	// (for Vault KV v2, the secret's current_version). Workloads that inject
	// this ExternalSecret roll out when they change.
	// +optional
	Versions map[string]string `json:"versions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=keyhook,shortName=es
// +kubebuilder:printcolumn:name="Store",type=string,JSONPath=`.spec.secretStoreRef.name`
// +kubebuilder:printcolumn:name="Refresh",type=string,JSONPath=`.spec.refreshInterval`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// ExternalSecret says which secrets to fetch from a store and where they go:
// into pods that inject it, and into a Kubernetes Secret.
type ExternalSecret struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ExternalSecretSpec   `json:"spec"`
	Status ExternalSecretStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// ExternalSecretList is a list of ExternalSecrets.
type ExternalSecretList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ExternalSecret `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ExternalSecret{}, &ExternalSecretList{})
}

// TargetName is the name of the Secret the ExternalSecret is synced into:
// spec.target.name, or else its own name.
func (es *ExternalSecret) TargetName() string {
	if es.Spec.Target.Name != "" {
		return es.Spec.Target.Name
	}
	return es.Name
}
