package providers_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/keyhook/keyhook/pkg/providers"
	"github.com/keyhook/keyhook/pkg/providers/agentlogins"
	"github.com/keyhook/keyhook/pkg/store"
)

// A build without provider tags joins every provider pkg/store lists, in
// its order: a provider registered there and forgotten here could be
// validated and injected, but never synced.
func TestEveryProviderIsConnected(t *testing.T) {
	var got []string
	for _, c := range providers.Connectors() {
		if c.Sync == nil || c.Agent == nil {
			t.Errorf("%s: connector without a login", c.Name())
		}
		got = append(got, c.Name())
	}
	if want := store.All().Names(); !slices.Equal(got, want) {
		t.Errorf("connected providers = %v, want pkg/store's %v", got, want)
	}
	got = nil
	for _, l := range agentlogins.All() {
		if l.Planned == nil || l.Login == nil {
			t.Errorf("%s: agent login without its functions", l.Name)
		}
		got = append(got, l.Name)
	}
	if want := store.All().Names(); !slices.Equal(got, want) {
		t.Errorf("the agent's providers = %v, want pkg/store's %v", got, want)
	}
}

// The init-agent built for one provider links that provider's SDK and no
// other one's (make build's keyhook-init-agent-<provider>).
func TestOneProviderAgentLinksNoOtherSDK(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	sdks := map[string]string{
		"vault": "github.com/hashicorp/vault/api",
		"aws":   "github.com/aws/aws-sdk-go-v2",
		"gcpsm": "cloud.google.com/go/secretmanager",
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go test runs with go on PATH: %v", err)
	}
	for _, name := range store.All().Names() {
		if _, ok := sdks[name]; !ok {
			t.Errorf("no SDK listed for provider %s", name)
		}
	}
	for provider := range sdks {
		out, err := exec.Command(goBin, "list", "-deps", "-tags", provider, "../../cmd/init-agent").CombinedOutput()
		if err != nil {
			t.Fatalf("go list -tags %s: %v\n%s", provider, err, out)
		}
		deps := strings.Fields(string(out))
		for other, sdk := range sdks {
			linked := slices.ContainsFunc(deps, func(d string) bool { return strings.HasPrefix(d, sdk) })
			if linked != (other == provider) {
				t.Errorf("init-agent -tags %s: links %s's SDK (%s) = %v", provider, other, sdk, linked)
			}
		}
	}
}
