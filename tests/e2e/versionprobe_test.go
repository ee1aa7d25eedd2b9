package e2e

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/tests/framework"
)

// versionProbeInterval is the package controller's --version-probe-interval,
// shorter than the default so that the tests wait less.
const versionProbeInterval = 2 * time.Second

// enableAudit turns Vault's file audit log on (once for the package) and
// returns its path: what Vault served, counted by Vault.
func enableAudit(ctx context.Context, t *testing.T) string {
	t.Helper()
	auditLog := filepath.Join(workDir, "vault-audit.log")
	if err := vault.Client.Sys().EnableAuditWithOptionsWithContext(ctx, "file", &vaultapi.EnableAuditOptions{
		Type: "file", Options: map[string]string{"file_path": auditLog},
	}); err != nil && !strings.Contains(err.Error(), "path already in use") {
		t.Fatal(err)
	}
	return auditLog
}

// TestVersionProbeRollsWithoutReadingValues: two ExternalSecrets with
// refreshInterval 1h read one Vault secret, and a Deployment follows their
// Secrets. While nothing changes, several probe intervals pass with version
// probes (Vault's metadata endpoint) and no value read. A new value written
// to Vault then reaches both Secrets, with one value read, and rolls the
// Deployment once (a new ReplicaSet) — long before the hour is up.
func TestVersionProbeRollsWithoutReadingValues(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	auditLog := enableAudit(ctx, t)
	ns := tenant(ctx, t, "probe")
	key := ns + "/db"
	dataPath, metadataPath := "secret/data/"+key, "secret/metadata/"+key
	v1, v2 := secretValue(t, "password-1"), secretValue(t, "password-2")
	if err := vault.Put(ctx, key, map[string]any{"password": v1}); err != nil {
		t.Fatal(err)
	}
	hour := &metav1.Duration{Duration: time.Hour}
	for _, name := range []string{"db", "db-copy"} {
		if err := cluster.Client.Create(ctx, externalSecret(ns, name, v1alpha1.ExternalSecretSpec{
			RefreshInterval: hour,
			Data:            []v1alpha1.ExternalSecretData{data("password", key, "password", "")},
		})); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"db", "db-copy"} {
		waitForES(ctx, t, ns, name, "Ready", readyIs(metav1.ConditionTrue, "SecretSynced"))
	}
	if err := cluster.Client.Create(ctx, deployment(ns, "web", annotated("keyhook.dev/rollout", "auto"), envFromSecret("db"), envFromSecret("db-copy"))); err != nil {
		t.Fatal(err)
	}
	waitReplicaSets(ctx, t, ns, "web", 1)
	waitRecorded(ctx, t, ns, "web", "secret/db", "secret/db-copy")

	// Nothing changes: the probes ask for the version, never the value.
	reads0 := auditReads(t, auditLog, dataPath)
	probes0 := auditReads(t, auditLog, metadataPath)
	if err := framework.WaitFor(ctx, versionProbeInterval, func() (bool, error) {
		return auditReads(t, auditLog, metadataPath) >= probes0+3, nil
	}); err != nil {
		t.Fatalf("Vault served %d version probes (metadata reads) of the key, want at least 3 more than %d: %v", auditReads(t, auditLog, metadataPath), probes0, err)
	}
	if got := auditReads(t, auditLog, dataPath); got != reads0 {
		t.Errorf("while nothing changed Vault served %d value reads of the key, want 0", got-reads0)
	}
	if n := replicaSets(ctx, t, ns, "web"); n != 1 {
		t.Errorf("while nothing changed the Deployment has %d ReplicaSets, want 1", n)
	}
	if got := probeResults(t); got["unchanged"] == 0 {
		t.Errorf("keyhook_version_probes_total by result = %v, want unchanged probes counted", got)
	}

	// A new value in Vault: both Secrets get it and the Deployment rolls once.
	if err := vault.Put(ctx, key, map[string]any{"password": v2}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"db", "db-copy"} {
		err := framework.WaitFor(ctx, 200*time.Millisecond, func() (bool, error) {
			s := &corev1.Secret{}
			err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s)
			return err == nil && bytes.Equal(s.Data["password"], []byte(v2)), err
		})
		if err != nil {
			t.Fatalf("Secret %s/%s does not hold the new value (refreshInterval 1h; the version probe should have seen the change): %v", ns, name, err)
		}
	}
	waitReplicaSets(ctx, t, ns, "web", 2)
	if got := auditReads(t, auditLog, dataPath); got != reads0+1 {
		t.Errorf("Vault served %d value reads of the key for the change, want 1 for both ExternalSecrets", got-reads0)
	}
	if got := probeResults(t); got["changed"] == 0 {
		t.Errorf("keyhook_version_probes_total by result = %v, want the change counted", got)
	}
	// One rollout: wait out the storm guard, then count again.
	time.Sleep(rolloutDebounce + time.Second)
	if n := replicaSets(ctx, t, ns, "web"); n != 2 {
		t.Errorf("the Deployment has %d ReplicaSets after one change, want 2", n)
	}
	assertNoValues(ctx, t, ns, v1, v2)
}

// TestVersionProbeRollsInjectedFiles: an ExternalSecret injected into
// files only (creationPolicy None, refreshInterval 1h) is followed by its
// remote version: a value written to Vault rolls the Deployment that injects
// it, and no value of the key is ever read by the controller.
func TestVersionProbeRollsInjectedFiles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	auditLog := enableAudit(ctx, t)
	ns := tenant(ctx, t, "probe-files")
	key := ns + "/db"
	v1, v2 := secretValue(t, "password-1"), secretValue(t, "password-2")
	if err := vault.Put(ctx, key, map[string]any{"password": v1}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, externalSecret(ns, "db-files", v1alpha1.ExternalSecretSpec{
		RefreshInterval: &metav1.Duration{Duration: time.Hour},
		Target:          v1alpha1.ExternalSecretTarget{CreationPolicy: v1alpha1.CreationPolicyNone},
		Data:            []v1alpha1.ExternalSecretData{data("password", key, "password", "")},
	})); err != nil {
		t.Fatal(err)
	}
	waitForES(ctx, t, ns, "db-files", "Ready", readyIs(metav1.ConditionTrue, "SecretSynced"))
	if err := cluster.Client.Create(ctx, deployment(ns, "files", annotated("keyhook.dev/rollout", "auto"), injecting("db-files"))); err != nil {
		t.Fatal(err)
	}
	waitRecorded(ctx, t, ns, "files", "externalsecret/db-files")
	waitReplicaSets(ctx, t, ns, "files", 1)
	if err := vault.Put(ctx, key, map[string]any{"password": v2}); err != nil {
		t.Fatal(err)
	}
	waitReplicaSets(ctx, t, ns, "files", 2)
	if got := auditReads(t, auditLog, "secret/data/"+key); got != 0 {
		t.Errorf("Vault served %d value reads of a key only injected (creationPolicy None), want 0", got)
	}
	assertNoValues(ctx, t, ns, v1, v2)
}

// TestVersionProbeFollowsAfterRestart: an ExternalSecret synced before the
// controller restarts, not due for an hour, is probed by the new process
// (which records the version first), and a value written afterwards
// reaches its Secret.
func TestVersionProbeFollowsAfterRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	auditLog := enableAudit(ctx, t)
	ns := tenant(ctx, t, "probe-restart")
	key := ns + "/db"
	v1, v2 := secretValue(t, "password-1"), secretValue(t, "password-2")
	if err := vault.Put(ctx, key, map[string]any{"password": v1}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, externalSecret(ns, "db", v1alpha1.ExternalSecretSpec{
		RefreshInterval: &metav1.Duration{Duration: time.Hour},
		Data:            []v1alpha1.ExternalSecretData{data("password", key, "password", "")},
	})); err != nil {
		t.Fatal(err)
	}
	waitForES(ctx, t, ns, "db", "Ready", readyIs(metav1.ConditionTrue, "SecretSynced"))
	if err := controller.Stop(); err != nil {
		t.Fatal(err)
	}
	probes := auditReads(t, auditLog, "secret/metadata/"+key)
	if err := controller.Start(ctx); err != nil {
		t.Fatalf("restarting the controller: %v", err)
	}
	if err := framework.WaitFor(ctx, versionProbeInterval/2, func() (bool, error) {
		return auditReads(t, auditLog, "secret/metadata/"+key) > probes, nil
	}); err != nil {
		t.Fatalf("the restarted controller never probed the version of the key its ExternalSecret, synced before, reads: %v", err)
	}
	if err := vault.Put(ctx, key, map[string]any{"password": v2}); err != nil {
		t.Fatal(err)
	}
	if err := framework.WaitFor(ctx, 200*time.Millisecond, func() (bool, error) {
		s := &corev1.Secret{}
		err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "db"}, s)
		return err == nil && bytes.Equal(s.Data["password"], []byte(v2)), err
	}); err != nil {
		t.Fatalf("Secret %s/db does not hold the value written after the restart (refreshInterval 1h): %v", ns, err)
	}
	assertNoValues(ctx, t, ns, v1, v2)
}

// TestVersionProbeFallbackIsAnnounced: a dataFrom.find has no version to
// probe; the ExternalSecret says, in an event, that it is refreshed every
// refreshInterval.
func TestVersionProbeFallbackIsAnnounced(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "probe-find")
	if err := vault.Client.Sys().PutPolicyWithContext(ctx, ns,
		`path "secret/data/`+ns+`/*" { capabilities = ["read"] }`+"\n"+`path "secret/metadata/`+ns+`/*" { capabilities = ["read", "list"] }`); err != nil {
		t.Fatal(err)
	}
	value := secretValue(t, "token")
	if err := vault.Put(ctx, ns+"/app/token", map[string]any{"value": value}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, externalSecret(ns, "found", v1alpha1.ExternalSecretSpec{
		DataFrom: []v1alpha1.ExternalSecretDataFrom{{Find: &v1alpha1.ExternalSecretFind{Path: ns + "/app/"}}},
	})); err != nil {
		t.Fatal(err)
	}
	waitForES(ctx, t, ns, "found", "Ready", readyIs(metav1.ConditionTrue, "SecretSynced"))
	var note string
	if err := framework.WaitFor(ctx, 200*time.Millisecond, func() (bool, error) {
		for _, e := range events(ctx, t, ns, "found") {
			if e.Reason == "VersionProbeUnavailable" {
				note = e.Message
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		t.Fatalf("no VersionProbeUnavailable event on the ExternalSecret: %v", err)
	}
	if !strings.Contains(note, "refreshInterval") || !strings.Contains(note, "dataFrom.find") {
		t.Errorf("event %q, want it to name dataFrom.find and refreshInterval", note)
	}
	assertNoValues(ctx, t, ns, value)
}

var probeResult = regexp.MustCompile(`(?m)^keyhook_version_probes_total\{provider="vault",result="([^"]*)"\} (\d+)$`)

// probeResults is the controller's keyhook_version_probes_total of Vault by
// result.
func probeResults(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, m := range probeResult.FindAllStringSubmatch(scrape(t, controller.MetricsURL), -1) {
		n, _ := strconv.Atoi(m[2])
		out[m[1]] = n
	}
	return out
}
