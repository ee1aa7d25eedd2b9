// Package v1alpha1 holds the keyhook.dev/v1alpha1 API: SecretStore,
// ClusterSecretStore and ExternalSecret. The shape follows External Secrets
// Operator where it can, so its users feel at home.
//
// +kubebuilder:object:generate=true
// +groupName=keyhook.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every type in this package.
	GroupVersion = schema.GroupVersion{Group: "keyhook.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion} //nolint:staticcheck // kubebuilder's layout; the types register in init() through it

	// AddToScheme adds the types of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
