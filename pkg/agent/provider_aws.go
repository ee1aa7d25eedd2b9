//go:build aws || all || !(vault || gcpsm)

package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/keyhook/keyhook/pkg/fetch"
	awsfetch "github.com/keyhook/keyhook/pkg/fetch/aws"
	"github.com/keyhook/keyhook/pkg/plan"
)

const hasAWS = true

func newAWS(ctx context.Context, a *plan.AWS, cfg Config) (fetch.Provider, error) {
	ac := awsfetch.Config{
		Service: a.Service, Region: a.Region, Endpoint: a.Endpoint, STSEndpoint: a.STSEndpoint,
		CABundle: []byte(a.CABundle), RoleARN: a.RoleARN, SessionName: a.SessionName,
	}
	if w := a.WebIdentity; w != nil {
		jwt, err := os.ReadFile(filepath.Join(cfg.Root, w.TokenPath))
		if err != nil {
			return nil, fmt.Errorf("reading the pod's service-account token: %w", err)
		}
		ac.WebIdentity = &awsfetch.WebIdentity{RoleARN: w.RoleARN, Token: strings.TrimSpace(string(jwt))}
	} else {
		keys := &awsfetch.StaticKeys{
			AccessKeyID:     strings.TrimSpace(cfg.Getenv(a.AccessKeyIDEnv)),
			SecretAccessKey: strings.TrimSpace(cfg.Getenv(a.SecretAccessKeyEnv)),
		}
		if a.SessionTokenEnv != "" {
			keys.SessionToken = strings.TrimSpace(cfg.Getenv(a.SessionTokenEnv))
		}
		if keys.AccessKeyID == "" || keys.SecretAccessKey == "" {
			return nil, fmt.Errorf("environment variables %s and %s (the store's access key Secret) must not be empty: %w", a.AccessKeyIDEnv, a.SecretAccessKeyEnv, fetch.ErrInvalid)
		}
		ac.Static = keys
	}
	return awsfetch.New(ctx, ac)
}
