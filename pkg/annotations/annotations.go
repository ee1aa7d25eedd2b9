// Package annotations holds every annotation and label key keyhook reads or
// writes, each with what it does, its default and an example. Nothing else in
// keyhook spells a key.
package annotations

const prefix = "keyhook.dev/"

// Keys set by users on pods (or on the pod templates of workloads).
const (
	// Inject lists the ExternalSecrets, of the pod's own namespace, whose
	// data the init-agent writes into the pod's in-memory secret volume.
	// Comma-separated names; whitespace around names is ignored. No default:
	// a pod without it is not injected. "false" opts out.
	//
	//	keyhook.dev/inject: "db-creds,api-key"
	Inject = prefix + "inject"

	// MountPath is the directory at which the secret volume is mounted into
	// every container; each ExternalSecret gets a subdirectory named after it.
	// Must be absolute. Default: DefaultMountPath.
	//
	//	keyhook.dev/mount-path: "/etc/secrets"
	MountPath = prefix + "mount-path"
)

// Keys written by keyhook.
const (
	// Status records that keyhook injected a pod. Value: "injected".
	//
	//	keyhook.dev/status: "injected"
	Status = prefix + "status"

	// StatusInjected is the value of Status on an injected pod.
	StatusInjected = "injected"
)

// DefaultMountPath is where the secret volume is mounted when the pod does
// not set MountPath: files are at /var/run/secrets/keyhook/<externalsecret>/<key>.
const DefaultMountPath = "/var/run/secrets/keyhook"

// OptOut is the value of Inject that turns injection off for a pod.
const OptOut = "false"

// Keys keyhook writes on the Secrets it manages.
const (
	// Managed labels every Secret keyhook materialises; its cache watches
	// only Secrets with this label, so memory does not grow with unrelated
	// Secrets. Value: "true".
	//
	//	keyhook.dev/managed: "true"
	Managed = prefix + "managed"

	// DataHash records the sha256 of the data keyhook wrote into a Secret,
	// so that an unchanged refresh writes nothing.
	//
	//	keyhook.dev/data-hash: "9f86d081884c7d65..."
	DataHash = prefix + "data-hash"
)
