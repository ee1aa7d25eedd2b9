package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	vaultapi "github.com/hashicorp/vault/api"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/mutate"
	"github.com/keyhook/keyhook/pkg/plan"
)

// lockedBuffer is the demo's output, written by it and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// digest stands for a value in comparisons, so that a failure never prints
// one.
func digest(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:8])
}

func digests(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = digest(v)
	}
	return out
}

// TestDemo runs `make demo`'s program and, before it stops, checks the state
// it claims to show against the real parts, not against what it prints: the
// stored pod is injected, the files its agent wrote are exactly the keys
// Vault held then, each synced Secret holds exactly Vault's keys and current
// values, and the Deployment rolled exactly once. No value is printed.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var out lockedBuffer
	var seen []string // every value Vault holds, for the leak check
	held := false
	err := demo(ctx, &out, func(e *env) error {
		held = true
		kv := e.Vault.Client.KVv2("secret")
		vaultData := func(path string, version int) map[string]string {
			t.Helper()
			get := func() (*vaultapi.KVSecret, error) { return kv.Get(ctx, path) }
			if version > 0 {
				get = func() (*vaultapi.KVSecret, error) { return kv.GetVersion(ctx, path, version) }
			}
			s, err := get()
			if err != nil {
				t.Fatalf("reading %s from Vault: %v", path, err)
			}
			m := map[string]string{}
			for k, v := range s.Data {
				m[k] = fmt.Sprint(v)
				seen = append(seen, m[k])
			}
			return m
		}
		db, dbFirst, api := vaultData("demo/db", 0), vaultData("demo/db", 1), vaultData("demo/api", 0)
		if digest(db["password"]) == digest(dbFirst["password"]) {
			t.Error("the demo did not rotate demo/db in Vault")
		}

		// The pod as stored: injected by the webhook.
		pod := &corev1.Pod{}
		if err := e.Cluster.Client.Get(ctx, client.ObjectKeyFromObject(e.Pod), pod); err != nil {
			t.Fatal(err)
		}
		checkInjected(t, pod)

		// The files the agent wrote (before the rotation): exactly Vault's
		// keys of version 1, with Vault's values.
		files := map[string]string{}
		base := filepath.Join(e.AgentRoot, "var/run/secrets/keyhook")
		err := filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(base, p)
			b, err := os.ReadFile(p)
			files[rel] = string(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{}
		for k, v := range dbFirst {
			want["db-creds/"+k] = v
		}
		for k, v := range api {
			want["api-key/"+k] = v
		}
		if diff := cmp.Diff(digests(want), digests(files)); diff != "" {
			t.Errorf("files the agent wrote differ from Vault (sha256 prefixes, -Vault +files):\n%s", diff)
		}

		// Each synced Secret: exactly Vault's current keys and values.
		for name, vaultNow := range map[string]map[string]string{"db-creds": db, "api-key": api} {
			s := &corev1.Secret{}
			if err := e.Cluster.Client.Get(ctx, client.ObjectKey{Namespace: "demo", Name: name}, s); err != nil {
				t.Errorf("Secret demo/%s: %v", name, err)
				continue
			}
			got := map[string]string{}
			for k, v := range s.Data {
				got[k] = string(v)
			}
			if diff := cmp.Diff(digests(vaultNow), digests(got)); diff != "" {
				t.Errorf("Secret demo/%s differs from Vault (sha256 prefixes, -Vault +Secret):\n%s", name, diff)
			}
			if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "ExternalSecret" || s.OwnerReferences[0].Name != name {
				t.Errorf("Secret demo/%s is owned by %v, want ExternalSecret %s", name, s.OwnerReferences, name)
			}
		}

		// The rotation rolled the Deployment once: two ReplicaSets, the
		// second one's pods of the new template.
		rss := &appsv1.ReplicaSetList{}
		if err := e.Cluster.Client.List(ctx, rss, client.InNamespace("demo"), client.MatchingLabels{"app": "web"}); err != nil {
			t.Fatal(err)
		}
		if len(rss.Items) != 2 {
			t.Errorf("Deployment demo/web has %d ReplicaSets after one rotation, want 2", len(rss.Items))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	if !held {
		t.Fatal("the demo never reached its end")
	}
	shown := out.String()
	for _, v := range seen {
		if len(v) >= 8 && strings.Contains(shown, v) {
			t.Errorf("the demo prints a value of Vault (sha256 %s)", digest(v))
		}
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", shown)
	}
}

// checkInjected checks the stored pod: keyhook's agent first, its plan
// naming both ExternalSecrets and no value, the in-memory volume mounted
// read-only into the app container, the token volume only in the agent.
func checkInjected(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	if pod.Annotations["keyhook.dev/status"] != "injected" {
		t.Errorf("pod annotation keyhook.dev/status = %q, want injected", pod.Annotations["keyhook.dev/status"])
	}
	if len(pod.Spec.InitContainers) != 1 || pod.Spec.InitContainers[0].Name != mutate.AgentContainerName {
		t.Fatalf("init containers %v, want only %s", pod.Spec.InitContainers, mutate.AgentContainerName)
	}
	agent := pod.Spec.InitContainers[0]
	if len(agent.Env) != 1 || agent.Env[0].Name != plan.EnvVar {
		t.Fatalf("agent env %v, want only %s", agent.Env, plan.EnvVar)
	}
	p, err := plan.Decode(agent.Env[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range p.Secrets {
		names = append(names, s.Name+" in "+s.Dir)
	}
	if diff := cmp.Diff([]string{"db-creds in /var/run/secrets/keyhook/db-creds", "api-key in /var/run/secrets/keyhook/api-key"}, names); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = v
	}
	if v := volumes[mutate.SecretsVolumeName]; v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory {
		t.Errorf("volume %s is not an in-memory emptyDir: %+v", mutate.SecretsVolumeName, v.VolumeSource)
	}
	if v := volumes[mutate.TokenVolumeName]; v.Projected == nil || len(v.Projected.Sources) != 1 || v.Projected.Sources[0].ServiceAccountToken.Audience != "vault" {
		t.Errorf("volume %s is not one projected token for audience vault: %+v", mutate.TokenVolumeName, v.VolumeSource)
	}
	for _, c := range pod.Spec.Containers {
		mounts := map[string]corev1.VolumeMount{}
		for _, m := range c.VolumeMounts {
			mounts[m.Name] = m
		}
		if m, ok := mounts[mutate.SecretsVolumeName]; !ok || !m.ReadOnly || m.MountPath != "/var/run/secrets/keyhook" {
			t.Errorf("container %s mounts %v, want %s read-only at /var/run/secrets/keyhook", c.Name, slices.Sorted(maps.Keys(mounts)), mutate.SecretsVolumeName)
		}
		if _, ok := mounts[mutate.TokenVolumeName]; ok {
			t.Errorf("container %s mounts the agent's token volume", c.Name)
		}
	}
}
