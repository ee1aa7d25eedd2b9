package vault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/keyhook/keyhook/pkg/fetch"
)

// Probe checks, reading no secret, that the provider's token is valid and
// may use its KV mount:
//   - auth/token/lookup-self, which the default policy grants every token,
//     says whether the token is valid;
//   - sys/internal/ui/mounts/<mount> is Vault's own preflight check (the
//     Vault CLI's kv commands make it): Vault answers it only for a token
//     whose policies grant some capability under the mount, and it says
//     which engine and KV version is mounted there.
//
// An error wraps fetch.ErrAccessDenied when the token is refused or may use
// nothing under the mount, and fetch.ErrInvalid when the mount is not a KV
// engine of the version the store names.
func (p *Provider) Probe(ctx context.Context) error {
	if _, err := p.client.Auth().Token().LookupSelfWithContext(ctx); err != nil {
		return fmt.Errorf("vault token lookup-self: %w", classify(err))
	}
	s, err := p.client.Logical().ReadWithContext(ctx, "sys/internal/ui/mounts/"+p.mount)
	if err != nil {
		return fmt.Errorf("KV mount %q: %w", p.mount, classify(err))
	}
	if s == nil || s.Data == nil {
		return fmt.Errorf("KV mount %q: vault answered no mount information: %w", p.mount, fetch.ErrInvalid)
	}
	typ, _ := s.Data["type"].(string)
	if typ != "kv" && typ != "generic" {
		return fmt.Errorf("mount %q is a %q secrets engine, not KV: %w", p.mount, typ, fetch.ErrInvalid)
	}
	version := 1
	if opts, ok := s.Data["options"].(map[string]any); ok && opts["version"] == "2" {
		version = 2
	}
	if version != p.version {
		return fmt.Errorf("mount %q is KV v%d but the store says v%d (spec.provider.vault.version): %w", p.mount, version, p.version, fetch.ErrInvalid)
	}
	return nil
}

// Reach checks, without logging in, that a Vault server answers at
// cfg.Server over a connection verified with cfg.CABundle: sys/health,
// which needs no token. It is what can be checked of a store whose login
// depends on who uses it.
func Reach(ctx context.Context, cfg Config) error {
	vc := vaultapi.DefaultConfig()
	if vc.Error != nil {
		return fmt.Errorf("vault client config: %w", vc.Error)
	}
	vc.Address = cfg.Server
	vc.MaxRetries = 0
	transport, ok := vc.HttpClient.Transport.(*http.Transport)
	if !ok {
		return fmt.Errorf("vault client has an unexpected transport")
	}
	defer transport.CloseIdleConnections()
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(cfg.CABundle) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.CABundle) {
			return fmt.Errorf("caBundle holds no PEM certificate: %w", fetch.ErrInvalid)
		}
		tlsCfg.RootCAs = pool
	}
	transport.TLSClientConfig = tlsCfg
	client, err := vaultapi.NewClient(vc)
	if err != nil {
		return fmt.Errorf("vault client for %s: %w", cfg.Server, err)
	}
	client.ClearToken()
	client.ClearNamespace()
	if cfg.Namespace != "" {
		client.SetNamespace(cfg.Namespace)
	}
	h, err := client.Sys().HealthWithContext(ctx)
	if err != nil {
		return fmt.Errorf("vault sys/health at %s: %w", strings.TrimRight(cfg.Server, "/"), classify(err))
	}
	if h.Sealed {
		return fmt.Errorf("vault at %s is sealed", strings.TrimRight(cfg.Server, "/"))
	}
	return nil
}
