package mutate

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/plan"
	"github.com/keyhook/keyhook/pkg/resolve"
)

var testConfig = Config{AgentImage: "keyhook/agent:test", AgentImagePullPolicy: corev1.PullIfNotPresent, AgentArgs: []string{"--deadline=2m0s"}}

type podOption func(*corev1.Pod)

func newPod(opts ...podOption) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "web", Annotations: map[string]string{"keyhook.dev/inject": "db"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "web", Image: "web:1",
			VolumeMounts: []corev1.VolumeMount{{Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}},
		}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func withFSGroup(g int64) podOption {
	return func(p *corev1.Pod) { p.Spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: &g} }
}

func withPodUser(u int64) podOption {
	return func(p *corev1.Pod) { p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: &u} }
}

func withInit(name string) podOption {
	return func(p *corev1.Pod) {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: name, Image: name + ":1"})
	}
}

func withMount(path string) podOption {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "config", MountPath: path})
	}
}

type sourceOption func(*resolve.Source)

func newSource(name string, opts ...sourceOption) *resolve.Source {
	s := &resolve.Source{
		ExternalSecret: &v1alpha1.ExternalSecret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: name},
			Spec: v1alpha1.ExternalSecretSpec{Data: []v1alpha1.ExternalSecretData{
				{SecretKey: "password", RemoteRef: v1alpha1.RemoteRef{Key: "team-a/" + name, Property: "password"}},
			}},
		},
		StoreKind: v1alpha1.SecretStoreKindNamespaced,
		StoreName: "vault",
		Store: &v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{
			Server: "https://vault:8200", Path: "secret", Version: v1alpha1.VaultKVv2,
			Auth: v1alpha1.VaultAuth{Kubernetes: &v1alpha1.VaultKubernetesAuth{MountPath: "kubernetes", Role: "app", Audience: "vault"}},
		}}},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func withAudience(aud string) sourceOption {
	return func(s *resolve.Source) { s.Store.Provider.Vault.Auth.Kubernetes.Audience = aud }
}

func withTokenAuth(kind v1alpha1.SecretStoreKind) sourceOption {
	return func(s *resolve.Source) {
		s.StoreKind = kind
		s.Store.Provider.Vault.Auth = v1alpha1.VaultAuth{TokenSecretRef: &v1alpha1.SecretKeySelector{Name: "vault-token", Key: "token"}}
	}
}

func vaultPlanStore(tokenPath string) plan.Store {
	return plan.Store{Kind: "SecretStore", Name: "vault", Vault: &plan.Vault{
		Server: "https://vault:8200", Path: "secret", KVVersion: 2,
		Kubernetes: &plan.VaultKubernetes{MountPath: "kubernetes", Role: "app", TokenPath: tokenPath},
	}}
}

func planSecret(name, dir string, store plan.Store) plan.Secret {
	return plan.Secret{Name: name, Dir: dir, Store: store,
		Data: []plan.Data{{SecretKey: "password", Ref: plan.Ref{Key: "team-a/" + name, Property: "password"}}}}
}

// injected builds the pod that Apply should return: base with the agent,
// volumes, mounts and annotation added, for the given plan and token sources.
func injected(t *testing.T, base *corev1.Pod, mountPath string, p plan.Plan, tokens []corev1.VolumeProjection, env []corev1.EnvVar, uid *int64) *corev1.Pod {
	t.Helper()
	out := base.DeepCopy()
	enc, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	out.Annotations["keyhook.dev/status"] = "injected"
	out.Spec.Volumes = append(out.Spec.Volumes, corev1.Volume{Name: "keyhook-secrets", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}})
	// The agent's view of the API token path is keyhook's token volume:
	// its stores' tokens, or nothing, never the pod's API token.
	tokenVolume := corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}
	if len(tokens) > 0 {
		tokenVolume = corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: tokens, DefaultMode: ptr.To[int32](0o444)}}
	}
	out.Spec.Volumes = append(out.Spec.Volumes, corev1.Volume{Name: "keyhook-token", VolumeSource: tokenVolume})
	mounts := []corev1.VolumeMount{
		{Name: "keyhook-secrets", MountPath: mountPath},
		{Name: "keyhook-token", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true},
	}
	agent := corev1.Container{
		Name: "keyhook-agent", Image: "keyhook/agent:test", ImagePullPolicy: corev1.PullIfNotPresent,
		Args:         []string{"--deadline=2m0s"},
		Env:          append([]corev1.EnvVar{{Name: "KEYHOOK_PLAN", Value: enc}}, env...),
		VolumeMounts: mounts,
		Resources:    DefaultAgentResources(),
		SecurityContext: &corev1.SecurityContext{
			RunAsUser: uid, RunAsNonRoot: ptr.To(true), ReadOnlyRootFilesystem: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}, SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	out.Spec.InitContainers = append([]corev1.Container{agent}, out.Spec.InitContainers...)
	ro := corev1.VolumeMount{Name: "keyhook-secrets", MountPath: mountPath, ReadOnly: true}
	for i := 1; i < len(out.Spec.InitContainers); i++ {
		out.Spec.InitContainers[i].VolumeMounts = append(out.Spec.InitContainers[i].VolumeMounts, ro)
	}
	for i := range out.Spec.Containers {
		out.Spec.Containers[i].VolumeMounts = append(out.Spec.Containers[i].VolumeMounts, ro)
	}
	return out
}

func tokenSource(aud, file string) corev1.VolumeProjection {
	return corev1.VolumeProjection{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: aud, ExpirationSeconds: ptr.To[int64](600), Path: file}}
}

func TestApply(t *testing.T) {
	def := ptr.To[int64](DefaultAgentUID)
	for _, tc := range []struct {
		name      string
		pod       *corev1.Pod
		req       *Request
		sources   []*resolve.Source
		want      func(t *testing.T, base *corev1.Pod) *corev1.Pod
		wantError string
	}{
		{
			name:    "one ExternalSecret, kubernetes auth",
			pod:     newPod(),
			req:     &Request{Names: []string{"db"}, MountPath: "/var/run/secrets/keyhook"},
			sources: []*resolve.Source{newSource("db")},
			want: func(t *testing.T, base *corev1.Pod) *corev1.Pod {
				return injected(t, base, "/var/run/secrets/keyhook", plan.Plan{Version: plan.Version, FileMode: 0o400, Secrets: []plan.Secret{
					planSecret("db", "/var/run/secrets/keyhook/db", vaultPlanStore(TokenDir+"/token-0")),
				}}, []corev1.VolumeProjection{tokenSource("vault", "token-0")}, nil, def)
			},
		},
		{
			name:    "two ExternalSecrets share one token; a third audience gets its own",
			pod:     newPod(withInit("migrate")),
			req:     &Request{Names: []string{"db", "api", "other"}, MountPath: "/etc/secrets"},
			sources: []*resolve.Source{newSource("db"), newSource("api"), newSource("other", withAudience("openbao"))},
			want: func(t *testing.T, base *corev1.Pod) *corev1.Pod {
				other := vaultPlanStore(TokenDir + "/token-1")
				return injected(t, base, "/etc/secrets", plan.Plan{Version: plan.Version, FileMode: 0o400, Secrets: []plan.Secret{
					planSecret("db", "/etc/secrets/db", vaultPlanStore(TokenDir+"/token-0")),
					planSecret("api", "/etc/secrets/api", vaultPlanStore(TokenDir+"/token-0")),
					planSecret("other", "/etc/secrets/other", other),
				}}, []corev1.VolumeProjection{tokenSource("vault", "token-0"), tokenSource("openbao", "token-1")}, nil, def)
			},
		},
		{
			name:    "fsGroup makes files group-readable",
			pod:     newPod(withFSGroup(2000)),
			req:     &Request{Names: []string{"db"}, MountPath: "/var/run/secrets/keyhook"},
			sources: []*resolve.Source{newSource("db")},
			want: func(t *testing.T, base *corev1.Pod) *corev1.Pod {
				return injected(t, base, "/var/run/secrets/keyhook", plan.Plan{Version: plan.Version, FileMode: 0o440, Secrets: []plan.Secret{
					planSecret("db", "/var/run/secrets/keyhook/db", vaultPlanStore(TokenDir+"/token-0")),
				}}, []corev1.VolumeProjection{tokenSource("vault", "token-0")}, nil, def)
			},
		},
		{
			name:    "the agent inherits the pod's user",
			pod:     newPod(withPodUser(1234)),
			req:     &Request{Names: []string{"db"}, MountPath: "/var/run/secrets/keyhook"},
			sources: []*resolve.Source{newSource("db")},
			want: func(t *testing.T, base *corev1.Pod) *corev1.Pod {
				return injected(t, base, "/var/run/secrets/keyhook", plan.Plan{Version: plan.Version, FileMode: 0o400, Secrets: []plan.Secret{
					planSecret("db", "/var/run/secrets/keyhook/db", vaultPlanStore(TokenDir+"/token-0")),
				}}, []corev1.VolumeProjection{tokenSource("vault", "token-0")}, nil, nil)
			},
		},
		{
			name:    "token auth from a Secret of the pod's namespace, by reference",
			pod:     newPod(),
			req:     &Request{Names: []string{"db"}, MountPath: "/var/run/secrets/keyhook"},
			sources: []*resolve.Source{newSource("db", withTokenAuth(v1alpha1.SecretStoreKindNamespaced))},
			want: func(t *testing.T, base *corev1.Pod) *corev1.Pod {
				store := plan.Store{Kind: "SecretStore", Name: "vault", Vault: &plan.Vault{Server: "https://vault:8200", Path: "secret", KVVersion: 2, TokenEnv: "KEYHOOK_SECRET_0"}}
				env := []corev1.EnvVar{{Name: "KEYHOOK_SECRET_0", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "vault-token"}, Key: "token"}}}}
				return injected(t, base, "/var/run/secrets/keyhook", plan.Plan{Version: plan.Version, FileMode: 0o400, Secrets: []plan.Secret{
					planSecret("db", "/var/run/secrets/keyhook/db", store),
				}}, nil, env, def)
			},
		},
		{
			name:      "token auth of a ClusterSecretStore is denied",
			pod:       newPod(),
			req:       &Request{Names: []string{"db"}, MountPath: "/var/run/secrets/keyhook"},
			sources:   []*resolve.Source{newSource("db", withTokenAuth(v1alpha1.SecretStoreKindCluster))},
			wantError: `ClusterSecretStore "vault" authenticates with a Vault token from a Secret, which a pod of namespace "team-a" cannot use`,
		},
		{
			name:      "a mount below the secret directory conflicts",
			pod:       newPod(withMount("/var/run/secrets/keyhook/db")),
			req:       &Request{Names: []string{"db"}, MountPath: "/var/run/secrets/keyhook"},
			sources:   []*resolve.Source{newSource("db")},
			wantError: `container "web" mounts volume "config" at "/var/run/secrets/keyhook/db", which overlaps keyhook's "/var/run/secrets/keyhook"; set annotation keyhook.dev/mount-path`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.pod.DeepCopy()
			got, err := Apply(tc.pod, testConfig, tc.req, tc.sources)
			if diff := cmp.Diff(before, tc.pod); diff != "" {
				t.Errorf("Apply modified its input (-before +after):\n%s", diff)
			}
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want(t, tc.pod), got); diff != "" {
				t.Errorf("mutated pod (-want +got):\n%s", diff)
			}
			// Idempotent: applying to the result changes nothing.
			again, err := Apply(got, testConfig, tc.req, tc.sources)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, again); diff != "" {
				t.Errorf("second Apply changed the pod (-first +second):\n%s", diff)
			}
		})
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ann       map[string]string
		want      *Request
		wantError string
	}{
		{name: "no annotation", ann: map[string]string{"other": "x"}},
		{name: "opt-out", ann: map[string]string{"keyhook.dev/inject": "false"}},
		{name: "names with spaces and duplicates", ann: map[string]string{"keyhook.dev/inject": " db-creds , api-key,db-creds,"},
			want: &Request{Names: []string{"db-creds", "api-key"}, MountPath: "/var/run/secrets/keyhook"}},
		{name: "own namespace prefix", ann: map[string]string{"keyhook.dev/inject": "team-a/db"},
			want: &Request{Names: []string{"db"}, MountPath: "/var/run/secrets/keyhook"}},
		{name: "mount path", ann: map[string]string{"keyhook.dev/inject": "db", "keyhook.dev/mount-path": "/etc/secrets"},
			want: &Request{Names: []string{"db"}, MountPath: "/etc/secrets"}},
		{name: "other namespace", ann: map[string]string{"keyhook.dev/inject": "team-b/db"},
			wantError: `annotation keyhook.dev/inject: "team-b/db" refers to namespace "team-b", but a pod can inject only ExternalSecrets of its own namespace "team-a"`},
		{name: "bad name", ann: map[string]string{"keyhook.dev/inject": "db,Not_Valid"},
			wantError: `annotation keyhook.dev/inject: "Not_Valid" is not an ExternalSecret name`},
		{name: "empty list", ann: map[string]string{"keyhook.dev/inject": " , "},
			wantError: `annotation keyhook.dev/inject: " , " names no ExternalSecret`},
		{name: "relative mount path", ann: map[string]string{"keyhook.dev/inject": "db", "keyhook.dev/mount-path": "secrets"},
			wantError: `annotation keyhook.dev/mount-path: "secrets" is not a clean absolute directory`},
		{name: "root mount path", ann: map[string]string{"keyhook.dev/inject": "db", "keyhook.dev/mount-path": "/"},
			wantError: `annotation keyhook.dev/mount-path: "/" is not a clean absolute directory`},
		{name: "unclean mount path", ann: map[string]string{"keyhook.dev/inject": "db", "keyhook.dev/mount-path": "/etc/../var"},
			wantError: `annotation keyhook.dev/mount-path: "/etc/../var" is not a clean absolute directory`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse("team-a", tc.ann)
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}
