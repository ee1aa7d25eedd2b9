package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SecretStoreSpec says how to reach a provider and how to authenticate to it.
type SecretStoreSpec struct {
	// Provider configures the one secret manager this store reads from.
	Provider SecretStoreProvider `json:"provider"`

	// Conditions restrict which namespaces may use a ClusterSecretStore.
	// A store with no conditions admits every namespace. Ignored on a
	// namespaced SecretStore, which only its own namespace can use.
	// +optional
	Conditions []ClusterSecretStoreCondition `json:"conditions,omitempty"`

	// PermittedKeys restricts the remote keys ExternalSecrets may read
	// through this store: every key (and dataFrom.find path) must match one
	// of these regular expressions, matched against the whole key, with
	// ${namespace} replaced by the ExternalSecret's namespace (quoted). Empty
	// permits every key. Checked when an ExternalSecret is admitted, when a
	// pod is injected and at every sync.
	//
	//	permittedKeys: ["${namespace}/.*", "shared/public/.*"]
	// +optional
	PermittedKeys []string `json:"permittedKeys,omitempty"`
}

// SecretStoreProvider holds exactly one provider configuration.
// +kubebuilder:validation:MinProperties=1
// +kubebuilder:validation:MaxProperties=1
type SecretStoreProvider struct {
	// Vault reads from HashiCorp Vault or OpenBao KV secrets engines.
	// +optional
	Vault *VaultProvider `json:"vault,omitempty"`

	// AWS reads from AWS Secrets Manager or SSM Parameter Store.
	// +optional
	AWS *AWSProvider `json:"aws,omitempty"`

	// GCPSM reads from Google Secret Manager.
	// +optional
	GCPSM *GCPSMProvider `json:"gcpsm,omitempty"`
}

// AWSService is an AWS service that holds secrets.
// +kubebuilder:validation:Enum=SecretsManager;ParameterStore
type AWSService string

const (
	// AWSSecretsManager is AWS Secrets Manager.
	AWSSecretsManager AWSService = "SecretsManager"
	// AWSParameterStore is AWS Systems Manager Parameter Store.
	AWSParameterStore AWSService = "ParameterStore"
)

// AWSProvider configures AWS Secrets Manager or SSM Parameter Store.
type AWSProvider struct {
	// Service to read from.
	Service AWSService `json:"service"`

	// Region, e.g. eu-west-1.
	// +kubebuilder:validation:Pattern=`^[a-z0-9-]+$`
	Region string `json:"region"`

	// Role is the ARN of an IAM role to assume (STS AssumeRole) with the
	// credentials of Auth. A namespace may use it only if it matches the
	// namespace's permitted-role annotation (iam.amazonaws.com/permitted),
	// when that annotation is set.
	// +kubebuilder:validation:Pattern=`^arn:[a-z-]+:iam::[0-9]{12}:role/.+`
	// +optional
	Role string `json:"role,omitempty"`

	// Endpoint overrides the service endpoint (VPC endpoints, FIPS, tests).
	// +kubebuilder:validation:Pattern=`^https://`
	// +optional
	Endpoint string `json:"endpoint,omitempty"`

	// STSEndpoint overrides the STS endpoint used for web identity and
	// role assumption.
	// +kubebuilder:validation:Pattern=`^https://`
	// +optional
	STSEndpoint string `json:"stsEndpoint,omitempty"`

	// CABundle is a PEM bundle that verifies the endpoints' certificates,
	// for private endpoints; empty means the system roots.
	// +optional
	CABundle []byte `json:"caBundle,omitempty"`

	// Auth says which credentials to use. Empty means web identity with the
	// identity of the reader: the pod's own projected token for injected
	// pods, as IRSA does.
	// +optional
	Auth AWSAuth `json:"auth,omitempty"`
}

// AWSAuth holds at most one AWS authentication method.
// +kubebuilder:validation:MaxProperties=1
type AWSAuth struct {
	// SecretRef reads static access keys from a Secret of the store's
	// namespace (for a ClusterSecretStore, the namespace given).
	// +optional
	SecretRef *AWSAuthSecretRef `json:"secretRef,omitempty"`

	// JWT exchanges a projected service-account token for credentials of
	// RoleARN (STS AssumeRoleWithWebIdentity), exactly as IRSA does.
	// +optional
	JWT *AWSJWTAuth `json:"jwt,omitempty"`
}

// AWSAuthSecretRef names the Secret keys of static AWS access keys.
type AWSAuthSecretRef struct {
	// AccessKeyID is the key holding the access key id.
	AccessKeyID SecretKeySelector `json:"accessKeyIDSecretRef"`
	// SecretAccessKey is the key holding the secret access key.
	SecretAccessKey SecretKeySelector `json:"secretAccessKeySecretRef"`
	// SessionToken is the key holding a session token, for temporary keys.
	// +optional
	SessionToken *SecretKeySelector `json:"sessionTokenSecretRef,omitempty"`
}

// AWSJWTAuth is web identity federation with a service-account token.
type AWSJWTAuth struct {
	// RoleARN is the role the token is exchanged for. A namespace may use
	// it only if it matches the namespace's permitted-role annotation, when
	// that annotation is set.
	// +kubebuilder:validation:Pattern=`^arn:[a-z-]+:iam::[0-9]{12}:role/.+`
	RoleARN string `json:"roleArn"`

	// Audience of the projected token; default sts.amazonaws.com.
	// +kubebuilder:default=sts.amazonaws.com
	// +optional
	Audience string `json:"audience,omitempty"`

	// ServiceAccountRef names the service account, in the ExternalSecret's
	// namespace, whose token the reconciler uses. Injected pods always use
	// their own. Default: "default".
	// +optional
	ServiceAccountRef *ServiceAccountSelector `json:"serviceAccountRef,omitempty"`
}

// GCPSMProvider configures Google Secret Manager.
type GCPSMProvider struct {
	// ProjectID is the project that holds secrets named without a project.
	// +kubebuilder:validation:MinLength=1
	ProjectID string `json:"projectID"`

	// Endpoint overrides the API endpoint, host:port (private endpoints,
	// tests).
	// +optional
	Endpoint string `json:"endpoint,omitempty"`

	// CABundle is a PEM bundle that verifies the endpoint's certificate;
	// empty means the system roots.
	// +optional
	CABundle []byte `json:"caBundle,omitempty"`

	// Auth says which credentials to use. Empty means application default
	// credentials: workload identity for the pod, or the reconciler's.
	// +optional
	Auth GCPSMAuth `json:"auth,omitempty"`
}

// GCPSMAuth holds at most one Google authentication method.
// +kubebuilder:validation:MaxProperties=1
type GCPSMAuth struct {
	// SecretRef reads a service-account key (JSON) from a Secret of the
	// store's namespace.
	// +optional
	SecretRef *GCPSMAuthSecretRef `json:"secretRef,omitempty"`
}

// GCPSMAuthSecretRef names the Secret key of a service-account key file.
type GCPSMAuthSecretRef struct {
	// SecretAccessKey is the key holding the service-account JSON key.
	SecretAccessKey SecretKeySelector `json:"secretAccessKeySecretRef"`
}

// VaultKVVersion is the version of a Vault KV secrets engine.
// +kubebuilder:validation:Enum=v1;v2
type VaultKVVersion string

const (
	// VaultKVv1 is the unversioned KV secrets engine.
	VaultKVv1 VaultKVVersion = "v1"
	// VaultKVv2 is the versioned KV secrets engine.
	VaultKVv2 VaultKVVersion = "v2"
)

// VaultProvider configures a Vault (or OpenBao) server and KV mount.
type VaultProvider struct {
	// Server is the address of the Vault server, e.g. https://vault.vault:8200.
	// +kubebuilder:validation:Pattern=`^https?://`
	Server string `json:"server"`

	// Path is the mount path of the KV secrets engine, e.g. "secret".
	// +kubebuilder:default=secret
	// +kubebuilder:validation:MinLength=1
	// +optional
	Path string `json:"path,omitempty"`

	// Version of the KV secrets engine mounted at Path.
	// +kubebuilder:default=v2
	// +optional
	Version VaultKVVersion `json:"version,omitempty"`

	// Namespace is the Vault Enterprise / OpenBao namespace to use.
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// CABundle is a PEM bundle used to verify the Vault server's certificate.
	// Empty means the system roots.
	// +optional
	CABundle []byte `json:"caBundle,omitempty"`

	// Auth says how to authenticate to Vault.
	Auth VaultAuth `json:"auth"`
}

// VaultAuth holds exactly one Vault authentication method.
// +kubebuilder:validation:MinProperties=1
// +kubebuilder:validation:MaxProperties=1
type VaultAuth struct {
	// Kubernetes logs in with a service-account token through Vault's
	// kubernetes auth method. Injected pods use their own identity: a
	// projected token of the pod's service account.
	// +optional
	Kubernetes *VaultKubernetesAuth `json:"kubernetes,omitempty"`

	// TokenSecretRef names a Secret key that holds a Vault token. Only a
	// namespaced SecretStore can use it for injected pods, since a pod can
	// reference Secrets of its own namespace only.
	// +optional
	TokenSecretRef *SecretKeySelector `json:"tokenSecretRef,omitempty"`

	// JWT logs in with a projected service-account token through Vault's
	// jwt auth method (Vault validates it with the cluster's public keys or
	// OIDC discovery, without calling the apiserver). Injected pods use
	// their own token.
	// +optional
	JWT *VaultJWTAuth `json:"jwt,omitempty"`

	// AppRole logs in with a role id and a secret id from a Secret. Like
	// TokenSecretRef, injected pods can use it only through a namespaced
	// SecretStore.
	// +optional
	AppRole *VaultAppRoleAuth `json:"appRole,omitempty"`
}

// VaultJWTAuth configures Vault's jwt auth method.
type VaultJWTAuth struct {
	// Path is where the jwt auth method is mounted.
	// +kubebuilder:default=jwt
	// +optional
	Path string `json:"path,omitempty"`

	// Role is the Vault role to log in as.
	// +kubebuilder:validation:MinLength=1
	Role string `json:"role"`

	// Audience of the projected token; it must be one of the role's
	// bound_audiences.
	// +kubebuilder:default=vault
	// +optional
	Audience string `json:"audience,omitempty"`

	// ServiceAccountRef names the service account, in the ExternalSecret's
	// namespace, as which the reconciler logs in. Default: "default".
	// +optional
	ServiceAccountRef *ServiceAccountSelector `json:"serviceAccountRef,omitempty"`
}

// VaultAppRoleAuth configures Vault's approle auth method.
type VaultAppRoleAuth struct {
	// Path is where the approle auth method is mounted.
	// +kubebuilder:default=approle
	// +optional
	Path string `json:"path,omitempty"`

	// RoleID of the AppRole (not a secret).
	// +kubebuilder:validation:MinLength=1
	RoleID string `json:"roleId"`

	// SecretRef names the Secret key holding the secret id.
	SecretRef SecretKeySelector `json:"secretRef"`
}

// VaultKubernetesAuth configures Vault's kubernetes auth method.
type VaultKubernetesAuth struct {
	// MountPath is where the kubernetes auth method is mounted.
	// +kubebuilder:default=kubernetes
	// +optional
	MountPath string `json:"mountPath,omitempty"`

	// Role is the Vault role to log in as.
	// +kubebuilder:validation:MinLength=1
	Role string `json:"role"`

	// Audience of the projected service-account token presented to Vault.
	// It must match the audience of the Vault role.
	// +kubebuilder:default=vault
	// +optional
	Audience string `json:"audience,omitempty"`

	// ServiceAccountRef names the service account, in the ExternalSecret's
	// namespace, as which the reconciler logs in when it syncs a Secret: it
	// requests a short-lived token for it, so a namespace's Secrets hold only
	// what that namespace's own identity may read. Injected pods always log
	// in as themselves. Default: "default".
	// +optional
	ServiceAccountRef *ServiceAccountSelector `json:"serviceAccountRef,omitempty"`
}

// ServiceAccountSelector names a service account.
type ServiceAccountSelector struct {
	// Name of the service account.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}

// SecretKeySelector selects one key of a Secret.
type SecretKeySelector struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`

	// Namespace of the Secret, for a ClusterSecretStore; defaults to the
	// namespace of the store's user. A namespaced SecretStore references
	// only Secrets of its own namespace: another one is denied at admission.
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// Key within the Secret's data.
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`
}

// ClusterSecretStoreCondition admits namespaces to a ClusterSecretStore. A
// namespace is admitted when any condition matches it; within a condition,
// every field that is set must match.
type ClusterSecretStoreCondition struct {
	// NamespaceSelector matches the labels of the namespace.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// Namespaces lists namespace names.
	// +optional
	Namespaces []string `json:"namespaces,omitempty"`

	// NamespaceRegexes lists regular expressions matched against the whole
	// namespace name.
	// +optional
	NamespaceRegexes []string `json:"namespaceRegexes,omitempty"`
}

// SecretStoreStatus reports the state of a store.
type SecretStoreStatus struct {
	// Conditions of the store. Ready says whether keyhook's last probe of
	// the store (a login and a capability check that read no secret value)
	// passed, and if not, why.
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=keyhook,shortName=ss
// +kubebuilder:printcolumn:name="Vault",type=string,JSONPath=`.spec.provider.vault.server`,priority=1
// +kubebuilder:printcolumn:name="AWS",type=string,JSONPath=`.spec.provider.aws.service`,priority=1
// +kubebuilder:printcolumn:name="GCP project",type=string,JSONPath=`.spec.provider.gcpsm.projectID`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// SecretStore says how to reach a secret manager; only ExternalSecrets of its
// own namespace can use it.
type SecretStore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   SecretStoreSpec   `json:"spec"`
	Status SecretStoreStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// SecretStoreList is a list of SecretStores.
type SecretStoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SecretStore `json:"items"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=keyhook,shortName=css
// +kubebuilder:printcolumn:name="Vault",type=string,JSONPath=`.spec.provider.vault.server`,priority=1
// +kubebuilder:printcolumn:name="AWS",type=string,JSONPath=`.spec.provider.aws.service`,priority=1
// +kubebuilder:printcolumn:name="GCP project",type=string,JSONPath=`.spec.provider.gcpsm.projectID`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// ClusterSecretStore is a SecretStore that ExternalSecrets of every namespace
// its conditions admit can use.
type ClusterSecretStore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   SecretStoreSpec   `json:"spec"`
	Status SecretStoreStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// ClusterSecretStoreList is a list of ClusterSecretStores.
type ClusterSecretStoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterSecretStore `json:"items"`
}

func init() {
	SchemeBuilder.Register(&SecretStore{}, &SecretStoreList{}, &ClusterSecretStore{}, &ClusterSecretStoreList{})
}
