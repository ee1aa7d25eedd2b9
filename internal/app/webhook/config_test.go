package webhook

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.TLSMode != "files" || c.CertDir != "/etc/keyhook/tls" || c.AgentDeadline != 2*time.Minute || c.AgentImagePullPolicy != string(corev1.PullIfNotPresent) {
		t.Errorf("defaults: %+v", c)
	}
	if got := c.MutateConfig().AgentArgs; len(got) != 1 || got[0] != "--deadline=2m0s" {
		t.Errorf("agent args %q, want --deadline=2m0s", got)
	}
	for args, want := range map[string]string{
		"--tls-mode=cert-manager":        `--tls-mode "cert-manager" is not files or self-managed`,
		"--agent-image=":                 "--agent-image must not be empty",
		"--agent-image-pull-policy=Some": `--agent-image-pull-policy "Some" is not Always, IfNotPresent or Never`,
		"--agent-deadline=0s":            "--agent-deadline 0s must be positive",
		"--webhook-port=70000":           "--webhook-port 70000 is not a port",
		// The webhook issues nothing: the issuer's flags are the controller's.
		"--ca-validity=1h": "flag provided but not defined: -ca-validity",
	} {
		if _, err := ParseConfig([]string{args}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", args, err, want)
		}
	}
	if _, err := ParseConfig([]string{"--tls-mode=self-managed", "--cert-secret=nonamespace"}); err == nil || !strings.Contains(err.Error(), `--cert-secret "nonamespace" is not namespace/name`) {
		t.Errorf("self-managed with a bad --cert-secret: err = %v", err)
	}
}
