package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
)

// TestSyncReadsSharedKeyOnce has two ExternalSecrets read the same remote
// secret in one cycle and counts, in Vault's own audit log, the reads Vault
// served: one.
func TestSyncReadsSharedKeyOnce(t *testing.T) {
	ctx := testContext(t)
	auditLog := filepath.Join(workDir, "vault-audit.log")
	if err := vault.Client.Sys().EnableAuditWithOptionsWithContext(ctx, "file", &vaultapi.EnableAuditOptions{
		Type: "file", Options: map[string]string{"file_path": auditLog},
	}); err != nil && !strings.Contains(err.Error(), "path already in use") {
		t.Fatal(err)
	}
	ns := tenant(ctx, t, "dedupe")
	if err := vault.Put(ctx, ns+"/shared", map[string]any{"a": secretValue(t, "a"), "b": secretValue(t, "b")}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"first", "second"} {
		if err := cluster.Client.Create(ctx, externalSecret(ns, name, v1alpha1.ExternalSecretSpec{
			Data: []v1alpha1.ExternalSecretData{data("a", ns+"/shared", "a", ""), data("b", ns+"/shared", "b", "")},
		})); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"first", "second"} {
		waitForES(ctx, t, ns, name, "Ready", readyIs(metav1.ConditionTrue, "SecretSynced"))
	}
	if got := auditReads(t, auditLog, "secret/data/"+ns+"/shared"); got != 1 {
		t.Errorf("Vault served %d reads of the shared secret to two ExternalSecrets, want 1", got)
	}

	metrics := scrape(t, controller.MetricsURL)
	for _, want := range []string{
		`keyhook_provider_calls_total{call="get_secret",provider="vault",status="success"}`,
		`keyhook_provider_calls_total{call="login",provider="vault",status="success"}`,
		// At least one: a reconcile woken by its own Secret's creation may
		// see the ExternalSecret's status before the informer has it, and
		// sync again (served by the read cache: Vault's count above is 1).
		`keyhook_sync_calls_total{name="first",namespace="` + ns + `",provider="vault",status="success"} `,
		`keyhook_last_sync_state{name="second",namespace="` + ns + `",provider="vault"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// auditReads counts the read requests for path in a Vault file audit log.
func auditReads(t *testing.T, file, path string) int {
	t.Helper()
	// The audit device writes asynchronously to the response; give it a moment.
	time.Sleep(200 * time.Millisecond)
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var entry struct {
			Type    string `json:"type"`
			Request struct {
				Operation string `json:"operation"`
				Path      string `json:"path"`
			} `json:"request"`
		}
		if json.Unmarshal(sc.Bytes(), &entry) != nil {
			continue
		}
		if entry.Type == "request" && entry.Request.Operation == "read" && entry.Request.Path == path {
			n++
		}
	}
	return n
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
