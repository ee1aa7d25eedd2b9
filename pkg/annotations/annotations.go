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

	// InjectMode is "files" (default: the init-agent writes the data into
	// an in-memory volume, as the pod's identity) or "secret" (the Secrets
	// keyhook materialises for the ExternalSecrets are mounted at
	// <mount-path>/<ExternalSecret>; no init container). Overrides the mode
	// of a ClusterInjectionPolicy.
	//
	//	keyhook.dev/inject-mode: "secret"
	InjectMode = prefix + "inject-mode"
)

// Labels keyhook sets on namespaces. The webhook configurations select on
// them, so that the apiserver itself knows how to fail for each namespace.
const (
	// Injection is set on every namespace a ClusterInjectionPolicy selects:
	// "enforced" when any selecting policy enforces (the webhook entry for
	// these namespaces fails closed), "default" otherwise (every pod is sent
	// to the webhook, which fails open). Namespaces without it send only
	// annotated pods. Set and removed by keyhook alone: the
	// ValidatingAdmissionPolicy keyhook-namespace-labels denies anyone else
	// adding, changing or removing it (pkg/webhookconfig).
	//
	//	keyhook.dev/injection: "enforced"
	Injection = prefix + "injection"

	// InjectionEnforced is the value of Injection for enforced namespaces.
	InjectionEnforced = "enforced"
	// InjectionDefault is the value of Injection for other selected namespaces.
	InjectionDefault = "default"
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

// Keys users set on ExternalSecrets.
const (
	// ForceSync, set to a new value, syncs an ExternalSecret at once instead
	// of at its next refresh. Any value; a timestamp is customary.
	//
	//	keyhook.dev/force-sync: "2026-11-22T10:00:00Z"
	ForceSync = prefix + "force-sync"
)

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

// Keys users set on workloads (Deployments, StatefulSets, DaemonSets,
// CronJobs, Argo Rollouts) to have
// keyhook roll them when their secrets change.
const (
	// Rollout opts a workload in to rollouts: "auto" rolls it when any
	// Secret or ConfigMap its pods reference, or any ExternalSecret they get
	// injected (by annotation or ClusterInjectionPolicy), changes; a
	// comma-separated list of ExternalSecret names limits that to those. No default: without it (or a Reloader key) nothing rolls.
	//
	//	keyhook.dev/rollout: "auto"
	//	keyhook.dev/rollout: "db-creds,api-key"
	Rollout = prefix + "rollout"

	// RolloutPaused holds rollouts of a workload while "true"; changes are
	// reported in events and rolled once it is removed. Default: not paused.
	//
	//	keyhook.dev/rollout-paused: "true"
	RolloutPaused = prefix + "rollout-paused"

	// RolloutAuto is the value of Rollout that follows everything a workload uses.
	RolloutAuto = "auto"
)

// Stakater Reloader's keys, honoured with Reloader's meaning so that its
// users switch without editing manifests. On a workload, or on its pod
// template when the workload has none of them for that kind (Secret or
// ConfigMap).
const (
	// ReloaderAuto: "true" rolls on any Secret or ConfigMap the pod
	// template references.
	ReloaderAuto = "reloader.stakater.com/auto"
	// ReloaderSecretAuto: "true" rolls on any referenced Secret.
	ReloaderSecretAuto = "secret.reloader.stakater.com/auto"
	// ReloaderConfigMapAuto: "true" rolls on any referenced ConfigMap.
	ReloaderConfigMapAuto = "configmap.reloader.stakater.com/auto"
	// ReloaderSecretReload: comma-separated Secret names (each an anchored
	// regular expression) to roll on, referenced or not.
	ReloaderSecretReload = "secret.reloader.stakater.com/reload"
	// ReloaderConfigMapReload: the same for ConfigMaps.
	ReloaderConfigMapReload = "configmap.reloader.stakater.com/reload"
	// ReloaderSecretExclude, on the workload: Secret names that never roll it.
	ReloaderSecretExclude = "secrets.exclude.reloader.stakater.com/reload"
	// ReloaderConfigMapExclude, on the workload: ConfigMap names that never roll it.
	ReloaderConfigMapExclude = "configmaps.exclude.reloader.stakater.com/reload"
	// ReloaderSearch: "true" rolls on the referenced Secrets and ConfigMaps
	// annotated ReloaderMatch "true".
	ReloaderSearch = "reloader.stakater.com/search"
	// ReloaderMatch, on a Secret or ConfigMap: "true" lets ReloaderSearch find it.
	ReloaderMatch = "reloader.stakater.com/match"
	// ReloaderIgnore, on a Secret or ConfigMap: "true" never rolls anything.
	ReloaderIgnore = "reloader.stakater.com/ignore"
	// ReloaderPausePeriod, on a Deployment: after a rollout, keep it paused
	// (spec.paused) for this long (a Go duration, e.g. "5m"), so that
	// further changes roll with it once it resumes.
	ReloaderPausePeriod = "deployment.reloader.stakater.com/pause-period"
	// ReloaderPausedAt, on a Deployment, written by keyhook (and Reloader):
	// when it paused it (RFC 3339).
	ReloaderPausedAt = "deployment.reloader.stakater.com/paused-at"
	// ReloaderRolloutStrategy, on an Argo Rollout: "restart" restarts its
	// pods (spec.restartAt) instead of changing its pod template ("rollout",
	// the default).
	ReloaderRolloutStrategy = "reloader.stakater.com/rollout-strategy"
)

// RolloutStrategy, on a workload, is how keyhook rolls it: "annotations"
// (the pod template's keyhook.dev/secret-hash annotation changes; the
// default, or --rollout-strategy) or "env-vars" (the first container's
// KEYHOOK_SECRET_HASH environment variable changes; Reloader's default).
//
//	keyhook.dev/rollout-strategy: "env-vars"
const RolloutStrategy = prefix + "rollout-strategy"

// Values of RolloutStrategy.
const (
	StrategyAnnotations = "annotations"
	StrategyEnvVars     = "env-vars"
)

// EnvSecretHash is the environment variable the env-vars strategy sets.
const EnvSecretHash = "KEYHOOK_SECRET_HASH"

// Keys keyhook writes on workloads.
const (
	// SecretHash, on the pod template, is the sha256 over the versions of
	// everything the workload follows; keyhook changes it to roll the
	// workload. It is first written at the first change, so that opting in
	// never rolls by itself.
	//
	//	keyhook.dev/secret-hash: "3a7bd3e2360a3d29..."
	SecretHash = prefix + "secret-hash"

	// SecretVersions, on the workload, records the version of each Secret and
	// ExternalSecret it follows, as last rolled or first seen (JSON).
	//
	//	keyhook.dev/secret-versions: '{"secret/db":"9f86d0...","externalsecret/api":"v:3"}'
	SecretVersions = prefix + "secret-versions"

	// LastRollout, on the workload, is when keyhook last rolled it (RFC 3339).
	LastRollout = prefix + "last-rollout"

	// RolloutPending, on the workload, is a rollout that is due and waits
	// for its inputs to settle: when the first and the last change were
	// seen and a hash of the inputs (JSON). A new leader picks it up.
	//
	//	keyhook.dev/rollout-pending: '{"since":"2026-11-30T21:00:00Z","seen":"2026-11-30T21:00:01Z","inputs":"3a7b..."}'
	RolloutPending = prefix + "rollout-pending"

	// ExternalSecretName, on a managed Secret, names the ExternalSecret that
	// materialises it (an annotation: names may be longer than a label value).
	//
	//	keyhook.dev/external-secret: "db-creds"
	ExternalSecretName = prefix + "external-secret"
)
