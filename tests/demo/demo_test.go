package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/keyhook/keyhook/tests/framework"
)

// TestDemo runs `make demo`'s program to the end (-once) and checks what it
// shows a newcomer: every file the agent wrote matches Vault, and no example
// value is printed.
func TestDemo(t *testing.T) {
	cmd := exec.Command("go", "run", "./tests/demo", "-once")
	cmd.Dir = framework.RepoRoot()
	cmd.Env = os.Environ()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}
	s := string(out)
	if n := strings.Count(s, "bytes  matches Vault"); n != 4 {
		t.Errorf("demo shows %d files matching Vault, want 4:\n%s", n, s)
	}
	if n := strings.Count(s, "every key matches Vault"); n != 2 {
		t.Errorf("demo shows %d synced Secrets matching Vault, want 2 (before and after the rotation):\n%s", n, s)
	}
	for _, want := range []string{"keyhook.dev/status=injected", "init container keyhook-agent", "emptyDir medium=Memory", "export KUBECONFIG=",
		"owner ExternalSecret/db-creds", "rolled once: 2 ReplicaSets", "event Rollout:"} {
		if !strings.Contains(s, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	for _, value := range []string{"correct-horse-battery-staple", "demo-api-token-123", "tr0ub4dor-and-3-rotated"} {
		if strings.Contains(s, value) {
			t.Errorf("demo output shows a secret value")
		}
	}
}
