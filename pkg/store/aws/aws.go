// Package aws is everything keyhook knows of an AWS store (Secrets Manager,
// SSM Parameter Store) without AWS's SDK: its defaults, its capabilities,
// the agent's plan and the logins of the sync and the agent. The SDK client
// is pkg/fetch/aws. What the init-agent needs (the login from the plan, the
// Config) is in awsagent, which links no CRD type.
package aws

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/plan"
	"github.com/keyhook/keyhook/pkg/store/aws/awsagent"
	"github.com/keyhook/keyhook/pkg/store/driver"
)

// DefaultAudience is the audience of the service-account token exchanged
// for a role (spec.provider.aws.auth.jwt.audience), as IRSA's. The CRD's
// marker writes the same (TestDefaultsMatchTheCRD).
const DefaultAudience = awsagent.DefaultAudience

// Services, as the store spec names them.
const (
	ServiceSecretsManager = awsagent.ServiceSecretsManager
	ServiceParameterStore = awsagent.ServiceParameterStore
)

// Config says which AWS service to read, where, and as whom: what
// pkg/fetch/aws.New logs in with.
type Config = awsagent.Config

// StaticKeys are AWS access keys.
type StaticKeys = awsagent.StaticKeys

// WebIdentity is STS AssumeRoleWithWebIdentity, as IRSA does it.
type WebIdentity = awsagent.WebIdentity

// Provider is the AWS provider (driver.Logins[Config]); its agent's login
// (Name, Planned, AgentConfig) is awsagent's.
type Provider struct{ awsagent.Agent }

var _ driver.Logins[Config] = Provider{}

// Title implements driver.Provider.
func (Provider) Title() string { return "AWS" }

// Configured implements driver.Provider.
func (Provider) Configured(spec *v1alpha1.SecretStoreSpec) bool { return spec.Provider.AWS != nil }

// Defaults implements driver.Provider.
func (Provider) Defaults() map[string]string {
	return map[string]string{"auth.jwt.audience": DefaultAudience}
}

// Capabilities declares what a store of service can do
// (awsagent.Capabilities).
func Capabilities(service string) fetch.Capabilities { return awsagent.Capabilities(service) }

// Capabilities implements driver.Provider.
func (Provider) Capabilities(spec *v1alpha1.SecretStoreSpec) fetch.Capabilities {
	return Capabilities(string(spec.Provider.AWS.Service))
}

// ProbeKey implements driver.KeyVersions: an SSM parameter named with a
// selector reads that version ("name:3", never changes) or the version a
// label points at ("name:label"), which the probe's DescribeParameters
// does not tell; both are refreshed every refreshInterval instead of being
// probed, and failing, every interval.
func (Provider) ProbeKey(spec *v1alpha1.SecretStoreSpec, key string) (bool, string) {
	if spec.Provider.AWS.Service != v1alpha1.AWSParameterStore {
		return true, ""
	}
	_, sel, ok := awsagent.SplitSelector(key)
	switch {
	case !ok:
		return true, ""
	case sel == "":
		return false, "" // invalid: the sync says why
	case strings.Trim(sel, "0123456789") == "":
		return false, "" // a version number: it does not change
	default:
		return false, fmt.Sprintf("SSM parameter %q follows a label, which version probes cannot read", key)
	}
}

var _ driver.KeyVersions = Provider{}

// MetricName implements driver.Provider.
func (Provider) MetricName(spec *v1alpha1.SecretStoreSpec) string {
	if spec.Provider.AWS.Service == v1alpha1.AWSParameterStore {
		return "aws-parameterstore"
	}
	return "aws-secretsmanager"
}

// CABundle implements driver.Provider.
func (Provider) CABundle(spec *v1alpha1.SecretStoreSpec) []byte { return spec.Provider.AWS.CABundle }

// Roles implements driver.Provider: the role assumed and the one a token is
// exchanged for.
func (Provider) Roles(spec *v1alpha1.SecretStoreSpec) map[string]string {
	a := spec.Provider.AWS
	out := map[string]string{}
	if a.Role != "" {
		out["spec.provider.aws.role"] = a.Role
	}
	if a.Auth.JWT != nil && a.Auth.JWT.RoleARN != "" {
		out["spec.provider.aws.auth.jwt.roleArn"] = a.Auth.JWT.RoleARN
	}
	return out
}

// AgentOnly implements driver.Provider: the sync can log in with either
// AWS auth method.
func (Provider) AgentOnly(v1alpha1.SecretStoreKind, *v1alpha1.SecretStoreSpec) string { return "" }

// PerNamespaceLogin implements driver.Provider.
func (Provider) PerNamespaceLogin(spec *v1alpha1.SecretStoreSpec) bool {
	noNS := func(s *v1alpha1.SecretKeySelector) bool { return s != nil && s.Namespace == "" }
	a := spec.Provider.AWS.Auth
	return a.JWT != nil || (a.SecretRef != nil && (noNS(&a.SecretRef.AccessKeyID) || noNS(&a.SecretRef.SecretAccessKey) || noNS(a.SecretRef.SessionToken)))
}

// ValidateExternalSecret implements driver.Provider: AWS takes any version
// (a stage or a version id).
func (Provider) ValidateExternalSecret(*v1alpha1.SecretStoreSpec, *v1alpha1.ExternalSecret) field.ErrorList {
	return nil
}

func connection(a *v1alpha1.AWSProvider) Config {
	return Config{
		Service: string(a.Service), Region: a.Region, Endpoint: a.Endpoint, STSEndpoint: a.STSEndpoint,
		CABundle: a.CABundle, RoleARN: a.Role,
	}
}

// SyncConfig implements driver.Logins: the sync exchanges a token of a
// service account of the ExternalSecret's namespace, or uses the access
// keys of the Secret the store names.
func (Provider) SyncConfig(ctx context.Context, src *driver.Source, creds driver.SyncCredentials) (Config, error) {
	a := src.Store.Provider.AWS
	cfg := connection(a)
	cfg.SessionName = "keyhook-sync-" + src.ExternalSecret.Namespace
	switch {
	case a.Auth.JWT != nil:
		tok, err := creds.ServiceAccountToken(ctx, a.Auth.JWT.ServiceAccountRef, driver.Defaulted(a.Auth.JWT.Audience, DefaultAudience))
		if err != nil {
			return Config{}, err
		}
		cfg.WebIdentity = &WebIdentity{RoleARN: a.Auth.JWT.RoleARN, Token: tok}
	case a.Auth.SecretRef != nil:
		ref := a.Auth.SecretRef
		keys := &StaticKeys{}
		var err error
		if keys.AccessKeyID, err = creds.SecretValue(ctx, ref.AccessKeyID, "access key id"); err != nil {
			return Config{}, err
		}
		if keys.SecretAccessKey, err = creds.SecretValue(ctx, ref.SecretAccessKey, "secret access key"); err != nil {
			return Config{}, err
		}
		if ref.SessionToken != nil {
			if keys.SessionToken, err = creds.SecretValue(ctx, *ref.SessionToken, "session token"); err != nil {
				return Config{}, err
			}
		}
		cfg.Static = keys
	default:
		return Config{}, fmt.Errorf("%s %q configures no AWS auth: %w", src.StoreKind, src.StoreName, fetch.ErrInvalid)
	}
	return cfg, nil
}

// Plan implements driver.Provider: the pod exchanges its own projected
// token (IRSA), or uses access keys from a Secret of its namespace.
func (Provider) Plan(src *driver.Source, creds driver.PodCredentials, out *plan.Store) error {
	a := src.Store.Provider.AWS
	es := src.ExternalSecret
	pa := &plan.AWS{
		Service:     string(a.Service),
		Region:      a.Region,
		Endpoint:    a.Endpoint,
		STSEndpoint: a.STSEndpoint,
		CABundle:    string(a.CABundle),
		RoleARN:     a.Role,
		SessionName: "keyhook-" + es.Namespace + "-" + es.Name,
	}
	switch {
	case a.Auth.JWT != nil:
		pa.WebIdentity = &plan.AWSWebIdentity{
			RoleARN:   a.Auth.JWT.RoleARN,
			TokenPath: creds.Token(driver.Defaulted(a.Auth.JWT.Audience, DefaultAudience)),
		}
	case a.Auth.SecretRef != nil:
		const instead = "use spec.provider.aws.auth.jwt (IRSA)"
		var err error
		if pa.AccessKeyIDEnv, err = creds.SecretEnv(src, a.Auth.SecretRef.AccessKeyID, "AWS access keys", instead); err != nil {
			return err
		}
		if pa.SecretAccessKeyEnv, err = creds.SecretEnv(src, a.Auth.SecretRef.SecretAccessKey, "AWS access keys", instead); err != nil {
			return err
		}
		if st := a.Auth.SecretRef.SessionToken; st != nil {
			if pa.SessionTokenEnv, err = creds.SecretEnv(src, *st, "AWS access keys", instead); err != nil {
				return err
			}
		}
	default:
		return driver.Denied("%s %q configures no AWS auth; set spec.provider.aws.auth.jwt.roleArn so that pods authenticate as themselves (IRSA)", src.StoreKind, src.StoreName)
	}
	out.AWS = pa
	return nil
}
