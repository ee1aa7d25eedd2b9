package mutate

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/plan"
	"github.com/keyhook/keyhook/pkg/resolve"
	kstore "github.com/keyhook/keyhook/pkg/store"
	"github.com/keyhook/keyhook/pkg/store/driver"
)

// Names of what keyhook adds to a pod. Apply replaces anything of these names,
// which makes it idempotent.
const (
	AgentContainerName = "keyhook-agent"
	SecretsVolumeName  = "keyhook-secrets"
	TokenVolumeName    = "keyhook-token"
	// TokenDir is where keyhook's token volume — the projected,
	// audience-bound tokens of the pod's stores — is mounted in the agent
	// container only; app containers never see them. It is the path of the
	// pod's API token on purpose: the ServiceAccount admission plugin mounts
	// the API token only into containers that have nothing there, so the
	// agent, which needs no API token, gets none. And the plugin, run again
	// after keyhook's patch, then changes nothing, so the API server does
	// not call keyhook a second time for the pod (reinvocation IfNeeded
	// stays, for containers another webhook adds after keyhook).
	TokenDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	// secretEnvPrefix prefixes the env vars that carry credentials from
	// Secrets of the pod's namespace (secretKeyRef, never literals).
	secretEnvPrefix = "KEYHOOK_SECRET_"
	// DefaultAgentUID is the user the agent runs as when the pod says nothing.
	DefaultAgentUID = 65532
	// tokenExpirationSeconds is the lifetime of the projected token: the
	// shortest the API server allows, since the agent uses it once.
	tokenExpirationSeconds = 600
)

// Config is the webhook-wide part of the mutation.
type Config struct {
	// AgentImage is the all-provider init-agent image.
	AgentImage string
	// ProviderImages are init-agent images built with one provider only
	// (plan.ProviderVault, ...): smaller, and linking no other provider's
	// SDK. A pod whose stores are all of one provider with an image here
	// gets that image; any other pod gets AgentImage.
	ProviderImages map[string]string
	// AgentImagePullPolicy of the init-agent image.
	AgentImagePullPolicy corev1.PullPolicy
	// AgentArgs are extra arguments of the agent, e.g. its deadline.
	AgentArgs []string
}

// agentImage is the image for plan p: the one-provider image when every
// store of p is of that provider and it has one, else the all-provider one.
func (c Config) agentImage(p *plan.Plan) string {
	provider := ""
	for _, s := range p.Secrets {
		switch sp := s.Store.Provider(); {
		case provider == "":
			provider = sp
		case sp != provider:
			return c.AgentImage
		}
	}
	if img := c.ProviderImages[provider]; img != "" {
		return img
	}
	return c.AgentImage
}

// DefaultAgentResources are small on purpose: the agent runs once and exits.
func DefaultAgentResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("10m"),
			corev1.ResourceMemory: resource.MustParse("16Mi"),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceMemory: resource.MustParse("64Mi"),
		},
	}
}

// PodError is a pod Apply refuses as it is written: a name keyhook
// reserves, a mount in keyhook's way, a mode its ExternalSecrets cannot
// serve. The message says what to change. Apply's other errors are a
// store's (a *resolve.DeniedError) or keyhook's own.
type PodError struct{ Msg string }

func (e *PodError) Error() string { return e.Msg }

func podErrorf(format string, args ...any) error {
	return &PodError{Msg: fmt.Sprintf(format, args...)}
}

// Apply returns a copy of pod with the init-agent, its volumes and the
// read-only secret mounts of req added. Applying it to its own output yields
// the same pod. sources are the resolved ExternalSecrets of req.Names, in order.
func Apply(pod *corev1.Pod, cfg Config, req *Request, sources []*resolve.Source) (*corev1.Pod, error) {
	if err := reservedNames(pod); err != nil {
		return nil, err
	}
	out := pod.DeepCopy()
	removeInjection(out)
	ch, err := build(ViewOf(out), cfg, req, sources)
	if err != nil {
		return nil, err
	}
	ch.applyTo(out)
	return out, nil
}

// buildPlan writes the agent's plan for the pod: one directory per
// ExternalSecret, one projected token per distinct audience, one token env
// var per distinct token Secret.
func buildPlan(fsGroup bool, req *Request, sources []*resolve.Source) (*plan.Plan, []corev1.VolumeProjection, []corev1.EnvVar, error) {
	p := &plan.Plan{Version: plan.Version, FileMode: 0o400}
	if fsGroup {
		p.FileMode = 0o440
	}
	b := &planBuilder{audiences: map[string]string{}, envByRef: map[v1alpha1.SecretKeySelector]string{}}
	for _, src := range sources {
		es := src.ExternalSecret
		store := plan.Store{Kind: string(src.StoreKind), Name: src.StoreName}
		var err error
		if provider := kstore.For(src.Store); provider != nil {
			err = provider.Plan(src, b, &store)
		} else {
			err = &resolve.DeniedError{Msg: fmt.Sprintf("%s %q configures no provider keyhook supports", src.StoreKind, src.StoreName)}
		}
		if err != nil {
			return nil, nil, nil, err
		}
		p.Secrets = append(p.Secrets, plan.Secret{
			Name:     es.Name,
			Dir:      path.Join(req.MountPath, es.Name),
			Store:    store,
			Data:     resolve.PlanData(es.Spec.Data),
			DataFrom: resolve.PlanDataFrom(es.Spec.DataFrom),
		})
	}
	return p, b.tokens, b.env, nil
}

var _ driver.PodCredentials = (*planBuilder)(nil)

// planBuilder collects what the agent's plan needs from the pod: one
// projected token per distinct audience, one env var per distinct Secret key.
type planBuilder struct {
	tokens    []corev1.VolumeProjection
	audiences map[string]string // audience → token path
	env       []corev1.EnvVar
	envByRef  map[v1alpha1.SecretKeySelector]string
}

// Token returns the path, in the agent, of a projected service-account token
// of the pod for audience (driver.PodCredentials).
func (b *planBuilder) Token(aud string) string {
	if tokenPath, ok := b.audiences[aud]; ok {
		return tokenPath
	}
	file := "token-" + strconv.Itoa(len(b.tokens))
	tokenPath := path.Join(TokenDir, file)
	b.audiences[aud] = tokenPath
	b.tokens = append(b.tokens, corev1.VolumeProjection{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
		Audience:          aud,
		ExpirationSeconds: ptr.To[int64](tokenExpirationSeconds),
		Path:              file,
	}})
	return tokenPath
}

// SecretEnv returns the name of an env var of the agent set from a key of a
// Secret of the pod's namespace (driver.PodCredentials). A pod can reference only Secrets of its own
// namespace, so a ClusterSecretStore's (or another namespace's) credentials
// can never reach it: such a store is denied with a message that says why.
func (b *planBuilder) SecretEnv(src *resolve.Source, ref v1alpha1.SecretKeySelector, what, instead string) (string, error) {
	es := src.ExternalSecret
	if src.StoreKind != v1alpha1.SecretStoreKindNamespaced || (ref.Namespace != "" && ref.Namespace != es.Namespace) {
		return "", &resolve.DeniedError{Msg: fmt.Sprintf(
			"%s %q authenticates with %s from a Secret, which a pod of namespace %q cannot use; injected pods authenticate as themselves: %s",
			src.StoreKind, src.StoreName, what, es.Namespace, instead)}
	}
	ref.Namespace = ""
	if name, ok := b.envByRef[ref]; ok {
		return name, nil
	}
	name := secretEnvPrefix + strconv.Itoa(len(b.env))
	b.envByRef[ref] = name
	b.env = append(b.env, corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: ref.Name},
		Key:                  ref.Key,
	}}})
	return name, nil
}

// agentSecurityContext locks the agent down. It runs as the user of the pod
// if the pod names one, else as the user of the first app container, so that
// files it writes with mode 0400 are readable by the app; else as a fixed
// non-root user.
func agentSecurityContext(pod *PodView) *corev1.SecurityContext {
	sc := new(corev1.SecurityContext)
	*sc = agentLockdown
	switch podUser, appUser := pod.Spec.SecurityContext.RunAsUser, firstContainerUser(pod); {
	case podUser.Set:
		// Inherited from the pod.
		if podUser.Value == 0 {
			// The pod runs as root on purpose; the agent still does not.
			sc.RunAsUser = ptr.To[int64](DefaultAgentUID)
		}
	case appUser.Set && appUser.Value != 0:
		sc.RunAsUser = ptr.To(appUser.Value)
	default:
		sc.RunAsUser = ptr.To[int64](DefaultAgentUID)
	}
	return sc
}

// agentLockdown is the agent's security context but its user, made once:
// a patch only encodes it (Apply gives each pod a copy).
var agentLockdown = corev1.SecurityContext{
	RunAsNonRoot:             ptr.To(true),
	ReadOnlyRootFilesystem:   ptr.To(true),
	AllowPrivilegeEscalation: ptr.To(false),
	Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
}

// firstContainerUser is the user the pod's first app container runs as.
func firstContainerUser(pod *PodView) OptionalInt64 {
	if len(pod.Spec.Containers) == 0 {
		return OptionalInt64{}
	}
	return pod.Spec.Containers[0].SecurityContext.RunAsUser
}

// buildSecretMode is the change that mounts, read-only into every container at
// <mount path>/<ExternalSecret>, the Secret keyhook materialises for each
// ExternalSecret. The volumes are not optional: the kubelet holds the pod in
// ContainerCreating until the Secret exists, so no container starts without
// its secrets. The kubelet writes a Secret volume's files as root (group
// fsGroup when the pod sets one): mode 0440 with fsGroup, else 0444, because
// with 0400 an app running as any other user could not read them (found on
// the real node, tests/node); the volume is the pod's alone and read-only.
func buildSecretMode(fsGroup bool, req *Request, sources []*resolve.Source) (*change, error) {
	mode := int32(0o444)
	if fsGroup {
		mode = 0o440
	}
	ch := &change{volumes: make([]corev1.Volume, 0, len(sources)), mounts: make([]corev1.VolumeMount, 0, len(sources))}
	for _, src := range sources {
		es := src.ExternalSecret
		if es.Spec.Target.CreationPolicy == v1alpha1.CreationPolicyNone {
			return nil, podErrorf("ExternalSecret %q has spec.target.creationPolicy None, so keyhook keeps no Secret to mount in secret mode; use files mode (annotation %s: files) or another creationPolicy",
				es.Name, annotations.InjectMode)
		}
		target := defaulted(es.Spec.Target.Name, es.Name)
		vol := SecretModeVolumeName(es.Name)
		ch.volumes = append(ch.volumes, corev1.Volume{
			Name: vol,
			VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName:  target,
				DefaultMode: ptr.To(mode),
				Optional:    ptr.To(false),
			}},
		})
		ch.mounts = append(ch.mounts, corev1.VolumeMount{Name: vol, MountPath: path.Join(req.MountPath, es.Name), ReadOnly: true})
	}
	return ch, nil
}

// secretModeVolumePrefix starts the name of every secret-mode volume.
const secretModeVolumePrefix = "keyhook-sec-"

// SecretModeVolumeName is the volume that mounts the Secret of ExternalSecret
// es in secret mode: a DNS label whatever the length of es.
func SecretModeVolumeName(es string) string {
	sum := sha256.Sum256([]byte(es))
	return secretModeVolumePrefix + hex.EncodeToString(sum[:6])
}

func isSecretModeVolume(name string) bool { return strings.HasPrefix(name, secretModeVolumePrefix) }

// reservedNames refuses a pod that uses the names of keyhook's init
// container or volumes for its own: the agent would collide with them (the
// apiserver rejects duplicate names with a message the user never wrote), or
// re-injection would drop them. A pod keyhook injected before carries them as
// keyhook's and is re-injected.
func reservedNames(pod *corev1.Pod) error {
	for _, c := range pod.Spec.Containers {
		if c.Name == AgentContainerName {
			return podErrorf("container name %q is reserved for keyhook's init-agent; rename the container", c.Name)
		}
	}
	if pod.Annotations[annotations.Status] == annotations.StatusInjected {
		return nil
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == AgentContainerName {
			return podErrorf("init container name %q is reserved for keyhook's init-agent; rename the init container", c.Name)
		}
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name == SecretsVolumeName || v.Name == TokenVolumeName || isSecretModeVolume(v.Name) {
			return podErrorf("volume name %q is reserved for keyhook (names %q, %q and %q*); rename the volume",
				v.Name, SecretsVolumeName, TokenVolumeName, secretModeVolumePrefix)
		}
	}
	return nil
}

// removeInjection undoes an earlier Apply, so that applying again converges.
func removeInjection(pod *corev1.Pod) {
	ours := func(name string) bool {
		return name == SecretsVolumeName || name == TokenVolumeName || isSecretModeVolume(name)
	}
	pod.Spec.InitContainers = slices.DeleteFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == AgentContainerName })
	pod.Spec.Volumes = slices.DeleteFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return ours(v.Name) })
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			cs[i].VolumeMounts = slices.DeleteFunc(cs[i].VolumeMounts, func(m corev1.VolumeMount) bool { return ours(m.Name) })
		}
	}
}

func isUnder(p, dir string) bool {
	return len(p) > len(dir) && p[len(dir)] == '/' && p[:len(dir)] == dir
}

func defaulted(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
