// Package awsagent is the part of pkg/store/aws the init-agent links: the
// login from the agent's plan (plan → Config), the Config itself, the
// defaults and the capabilities, with no CRD type and no Kubernetes library.
package awsagent

import (
	"fmt"
	"strings"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/plan"
	"github.com/keyhook/keyhook/pkg/store/driver/agentdriver"
)

// DefaultAudience is the audience of the service-account token exchanged
// for a role (spec.provider.aws.auth.jwt.audience), as IRSA's. The CRD's
// marker writes the same (TestDefaultsMatchTheCRD).
const DefaultAudience = "sts.amazonaws.com"

// Services, as the store spec names them (v1alpha1.AWSSecretsManager and
// v1alpha1.AWSParameterStore; pkg/store/aws's tests compare them).
const (
	ServiceSecretsManager = "SecretsManager"
	ServiceParameterStore = "ParameterStore"
)

// Config says which AWS service to read, where, and as whom: what
// pkg/fetch/aws.New logs in with.
type Config struct {
	// Service is ServiceSecretsManager or ServiceParameterStore.
	Service string
	// Region, e.g. eu-west-1.
	Region string
	// Endpoint overrides the service endpoint (VPC endpoints, FIPS,
	// tests); https:// only. Empty means the regional endpoint.
	Endpoint string
	// STSEndpoint overrides the STS endpoint used for web identity and
	// AssumeRole; https:// only. Empty means the regional STS endpoint.
	STSEndpoint string
	// CABundle is PEM, trusted for both endpoints instead of the system
	// roots; empty means the system roots.
	CABundle []byte
	// RoleARN, when set, is assumed (STS AssumeRole) with the credentials
	// of Static or WebIdentity, and secrets are read as that role.
	RoleARN string

	// Exactly one of Static and WebIdentity is set.

	// Static are access keys.
	Static *StaticKeys
	// WebIdentity exchanges a token for a role's credentials.
	WebIdentity *WebIdentity

	// SessionName names the role sessions (web identity and AssumeRole)
	// in CloudTrail, e.g. "keyhook-<namespace>-<name>". Characters STS
	// does not accept become '-', and it is cut to 64 characters. Empty
	// means "keyhook".
	SessionName string
}

// StaticKeys are AWS access keys.
type StaticKeys struct {
	AccessKeyID     string
	SecretAccessKey string
	// SessionToken is set for temporary keys only.
	SessionToken string
}

// WebIdentity is STS AssumeRoleWithWebIdentity, as IRSA does it.
type WebIdentity struct {
	// RoleARN is the role the token is exchanged for.
	RoleARN string
	// Token is the JWT presented to STS: a projected service-account
	// token whose audience the role trusts (sts.amazonaws.com).
	Token string
}

// Agent is the AWS provider's login for the init-agent
// (agentdriver.Logins[Config]); pkg/store/aws's Provider embeds it.
type Agent struct{}

var _ agentdriver.Logins[Config] = Agent{}

// Name implements agentdriver.Logins.
func (Agent) Name() string { return plan.ProviderAWS }

// Planned implements agentdriver.Logins.
func (Agent) Planned(s plan.Store) bool { return s.AWS != nil }

// Capabilities declares what a store of service (ServiceSecretsManager or
// ServiceParameterStore) can do: find by name prefix (Parameter Store: by
// path, recursively) and versions, on both.
func Capabilities(string) fetch.Capabilities {
	return fetch.Capabilities{Find: fetch.FindCapabilities{Path: true}, VersionProbe: true}
}

// AgentConfig implements agentdriver.Logins.
func (Agent) AgentConfig(s plan.Store, env agentdriver.Env) (Config, error) {
	a := s.AWS
	ac := Config{
		Service: a.Service, Region: a.Region, Endpoint: a.Endpoint, STSEndpoint: a.STSEndpoint,
		CABundle: []byte(a.CABundle), RoleARN: a.RoleARN, SessionName: a.SessionName,
	}
	if w := a.WebIdentity; w != nil {
		jwt, err := env.Token(w.TokenPath)
		if err != nil {
			return Config{}, err
		}
		ac.WebIdentity = &WebIdentity{RoleARN: w.RoleARN, Token: jwt}
		return ac, nil
	}
	keys := &StaticKeys{AccessKeyID: env.Env(a.AccessKeyIDEnv), SecretAccessKey: env.Env(a.SecretAccessKeyEnv)}
	if a.SessionTokenEnv != "" {
		keys.SessionToken = env.Env(a.SessionTokenEnv)
	}
	if keys.AccessKeyID == "" || keys.SecretAccessKey == "" {
		return Config{}, fmt.Errorf("environment variables %s and %s (the store's access key Secret) must not be empty: %w", a.AccessKeyIDEnv, a.SecretAccessKeyEnv, fetch.ErrInvalid)
	}
	ac.Static = keys
	return ac, nil
}

// SplitSelector splits an SSM parameter key "name:selector" (a version
// number or a label) into name and selector. Names (and the name part of
// an ARN, after "parameter/") cannot contain ':', so only a ':' after the
// last '/' starts a selector.
func SplitSelector(key string) (name, selector string, ok bool) {
	slash := strings.LastIndex(key, "/")
	colon := strings.LastIndex(key, ":")
	if colon <= slash {
		return key, "", false
	}
	return key[:colon], key[colon+1:], true
}
