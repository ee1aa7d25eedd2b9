// Package aws reads secrets from AWS Secrets Manager and AWS Systems Manager
// Parameter Store.
//
// Credentials come only from Config: static access keys, or a web identity
// token exchanged with STS (as IRSA does), optionally followed by
// AssumeRole. The process environment, shared config files, IMDS and every
// other link of the SDK's default chain are ignored on purpose: only the
// store's configuration decides whom keyhook reads as.
package aws

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"

	"github.com/keyhook/keyhook/pkg/fetch"
	storeaws "github.com/keyhook/keyhook/pkg/store/aws/awsagent"
)

// Services, as the store spec names them.
const (
	ServiceSecretsManager = storeaws.ServiceSecretsManager
	ServiceParameterStore = storeaws.ServiceParameterStore
)

// Config says which AWS service to read, where, and as whom; it is
// pkg/store/aws's, which builds it from a store without this SDK.
type Config = storeaws.Config

// StaticKeys are AWS access keys.
type StaticKeys = storeaws.StaticKeys

// WebIdentity is STS AssumeRoleWithWebIdentity, as IRSA does it.
type WebIdentity = storeaws.WebIdentity

// Capabilities declares what a store of service (ServiceSecretsManager or
// ServiceParameterStore) can do: find by name prefix (Parameter Store: by
// path, recursively) and versions, on both.
func Capabilities(service string) fetch.Capabilities { return storeaws.Capabilities(service) }

// New returns a Provider for cfg.Service: a *SecretsManager or a
// *ParameterStore. Credentials from STS are obtained here, once, and reused
// (refreshed only when they expire) for every read the provider makes, so
// New fails on bad credentials before any secret is read.
//
// The SDK's own retries are off: callers retry with their own backoff,
// jitter and deadline, and throttling surfaces as fetch.ErrThrottled.
func New(ctx context.Context, cfg Config) (fetch.Provider, error) {
	base, err := baseConfig(cfg)
	if err != nil {
		return nil, err
	}
	creds, identity, err := credentialsFor(cfg, base)
	if err != nil {
		return nil, err
	}
	if _, err := creds.Retrieve(ctx); err != nil {
		return nil, authFailed(cfg, identity, err)
	}
	c := caller{region: cfg.Region, identity: identity}
	switch cfg.Service {
	case ServiceSecretsManager:
		client := secretsmanager.NewFromConfig(base, func(o *secretsmanager.Options) {
			o.Credentials = creds
			if cfg.Endpoint != "" {
				o.BaseEndpoint = awssdk.String(cfg.Endpoint)
			}
		})
		c.service = "secretsmanager"
		return &SecretsManager{client: client, caller: c}, nil
	case ServiceParameterStore:
		client := ssm.NewFromConfig(base, func(o *ssm.Options) {
			o.Credentials = creds
			if cfg.Endpoint != "" {
				o.BaseEndpoint = awssdk.String(cfg.Endpoint)
			}
		})
		c.service = "ssm"
		return &ParameterStore{client: client, caller: c}, nil
	default:
		// baseConfig has checked the service already.
		return nil, fmt.Errorf("aws service %q: %w", cfg.Service, fetch.ErrInvalid)
	}
}

var regionRE = regexp.MustCompile(`^[a-z0-9-]+$`)

// baseConfig validates cfg and builds the aws.Config shared by the service
// and STS clients: region, HTTP client with the CA bundle, no retries, no
// SDK logging. It reads nothing from the environment.
func baseConfig(cfg Config) (awssdk.Config, error) {
	if cfg.Service != ServiceSecretsManager && cfg.Service != ServiceParameterStore {
		return awssdk.Config{}, fmt.Errorf("aws service %q is not %s or %s: %w", cfg.Service, ServiceSecretsManager, ServiceParameterStore, fetch.ErrInvalid)
	}
	if !regionRE.MatchString(cfg.Region) {
		return awssdk.Config{}, fmt.Errorf("aws region %q is not a region name like eu-west-1: %w", cfg.Region, fetch.ErrInvalid)
	}
	for name, e := range map[string]string{"endpoint": cfg.Endpoint, "stsEndpoint": cfg.STSEndpoint} {
		if e == "" {
			continue
		}
		if u, err := url.Parse(e); err != nil || u.Scheme != "https" || u.Host == "" {
			return awssdk.Config{}, fmt.Errorf("aws %s %q is not an https:// URL: %w", name, e, fetch.ErrInvalid)
		}
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(cfg.CABundle) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.CABundle) {
			return awssdk.Config{}, fmt.Errorf("aws caBundle holds no PEM certificate: %w", fetch.ErrInvalid)
		}
		tlsCfg.RootCAs = pool
	}
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.TLSClientConfig = tlsCfg
	})
	return awssdk.Config{
		Region:     cfg.Region,
		HTTPClient: httpClient,
		// Callers retry with their own backoff and deadline (and count
		// throttling); retries hidden in the client would eat that deadline
		// silently and hide throttling.
		RetryMaxAttempts: 1,
		Retryer:          func() awssdk.Retryer { return awssdk.NopRetryer{} },
		// The SDK can log request and response bodies; nothing of it may
		// ever reach a log.
		Logger:        logging.Nop{},
		ClientLogMode: 0,
	}, nil
}

// credentialsFor builds the credential chain cfg asks for and names the
// identity it reads as, for error messages: a role ARN or an access key id,
// never a secret key or token.
func credentialsFor(cfg Config, base awssdk.Config) (*awssdk.CredentialsCache, string, error) {
	session := sessionName(cfg.SessionName)
	stsClient := func(creds awssdk.CredentialsProvider) *sts.Client {
		return sts.NewFromConfig(base, func(o *sts.Options) {
			o.Credentials = creds
			if cfg.STSEndpoint != "" {
				o.BaseEndpoint = &cfg.STSEndpoint
			}
		})
	}

	var (
		creds    awssdk.CredentialsProvider
		identity string
	)
	switch {
	case cfg.Static != nil && cfg.WebIdentity != nil:
		return nil, "", fmt.Errorf("aws auth: both static keys and web identity are set, set one: %w", fetch.ErrInvalid)
	case cfg.Static != nil:
		k := cfg.Static
		if k.AccessKeyID == "" || k.SecretAccessKey == "" {
			return nil, "", fmt.Errorf("aws auth: static keys need an access key id and a secret access key: %w", fetch.ErrInvalid)
		}
		creds = credentials.NewStaticCredentialsProvider(k.AccessKeyID, k.SecretAccessKey, k.SessionToken)
		identity = "access key " + k.AccessKeyID
	case cfg.WebIdentity != nil:
		wi := cfg.WebIdentity
		if wi.RoleARN == "" || wi.Token == "" {
			return nil, "", fmt.Errorf("aws auth: web identity needs a role ARN and a token: %w", fetch.ErrInvalid)
		}
		// AssumeRoleWithWebIdentity is unsigned: the token is the credential.
		creds = stscreds.NewWebIdentityRoleProvider(stsClient(nil), wi.RoleARN, staticToken(wi.Token), func(o *stscreds.WebIdentityRoleOptions) {
			o.RoleSessionName = session
		})
		identity = "role " + wi.RoleARN + " (web identity)"
	default:
		return nil, "", fmt.Errorf("aws auth: neither static keys nor web identity is set: %w", fetch.ErrInvalid)
	}
	if cfg.RoleARN != "" {
		creds = stscreds.NewAssumeRoleProvider(stsClient(awssdk.NewCredentialsCache(creds)), cfg.RoleARN, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = session
		})
		identity = "role " + cfg.RoleARN + " (assumed as " + identity + ")"
	}
	return awssdk.NewCredentialsCache(creds), identity, nil
}

// staticToken hands the configured token to the web identity provider.
type staticToken string

func (t staticToken) GetIdentityToken() ([]byte, error) { return []byte(t), nil }

var sessionNameBadChars = regexp.MustCompile(`[^\w+=,.@-]`)

// sessionName makes name acceptable to STS: [\w+=,.@-]{2,64}.
func sessionName(name string) string {
	name = sessionNameBadChars.ReplaceAllString(name, "-")
	if len(name) > 64 {
		name = name[:64]
	}
	if len(name) < 2 {
		return "keyhook"
	}
	return name
}

func authFailed(cfg Config, identity string, err error) error {
	stsEndpoint := cfg.STSEndpoint
	if stsEndpoint == "" {
		stsEndpoint = "STS in " + cfg.Region
	}
	return describe(fmt.Sprintf("aws: getting credentials for %s from %s", identity, stsEndpoint), err)
}

// caller is what every error message says about the call: service, region
// and the identity in use.
type caller struct {
	service  string
	region   string
	identity string
}

// fail describes a failed call of op on what (a quoted key, maybe with its
// version) and classifies it.
func (c caller) fail(op, what string, err error) error {
	return describe(fmt.Sprintf("%s %s %s in %s as %s", c.service, op, what, c.region, c.identity), err)
}

// describe builds the error for a failed AWS call: prefix, then what AWS
// said (its error code and message), wrapping the fetch class that applies
// and err itself, so that errors.Is/As still find context.DeadlineExceeded
// or a smithy.APIError. The message never quotes a response body.
func describe(prefix string, err error) error {
	var (
		apiErr   smithy.APIError
		respErr  *awshttp.ResponseError
		deserErr *smithy.DeserializationError
		status   int
	)
	if errors.As(err, &respErr) {
		status = respErr.HTTPStatusCode()
	}
	var detail string
	switch {
	case errors.As(err, &apiErr):
		detail = apiErr.ErrorCode()
		if m := apiErr.ErrorMessage(); m != "" {
			detail += ": " + m
		}
	case errors.As(err, &deserErr):
		// A response that does not decode may hold a value; say only that.
		detail = fmt.Sprintf("could not decode the answer (HTTP %d)", status)
	default:
		detail = err.Error()
	}
	code := ""
	if apiErr != nil {
		code = apiErr.ErrorCode()
	}
	return &callError{Msg: prefix + ": " + detail, Class: classOf(code, status), Err: err}
}

// callError is fetch.CallError, the error every provider call returns.
type callError = fetch.CallError

// Error codes by class. AWS services disagree on names (STS speaks the
// query protocol's, the JSON services theirs), so all are listed.
var (
	throttledCodes = codes("ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException",
		"RequestLimitExceeded", "RequestThrottled", "RequestThrottledException", "SlowDown", "PriorRequestNotComplete")
	notFoundCodes = codes("ResourceNotFoundException", "ParameterNotFound", "ParameterVersionNotFound")
	deniedCodes   = codes("AccessDeniedException", "AccessDenied", "UnrecognizedClientException", "InvalidClientTokenId",
		"InvalidSignatureException", "SignatureDoesNotMatch", "IncompleteSignature", "IncompleteSignatureException",
		"MissingAuthenticationToken", "MissingAuthenticationTokenException", "RequestExpired", "InvalidIdentityToken",
		"IDPRejectedClaim", "NotAuthorized", "AuthFailure", "DecryptionFailure", "KMSAccessDeniedException")
	invalidCodes = codes("InvalidParameterException", "InvalidRequestException", "ValidationException", "ValidationError",
		"InvalidParameterValue", "InvalidKeyId", "InvalidFilterKey", "InvalidFilterOption", "InvalidFilterValue",
		"RegionDisabledException", "MalformedPolicyDocument", "PackedPolicyTooLarge")
)

func codes(cs ...string) map[string]bool {
	m := make(map[string]bool, len(cs))
	for _, c := range cs {
		m[c] = true
	}
	return m
}

// classOf maps an AWS error code and HTTP status onto fetch's classes; nil
// means transient.
func classOf(code string, status int) error {
	switch {
	case throttledCodes[code] || status == http.StatusTooManyRequests:
		return fetch.ErrThrottled
	case notFoundCodes[code]:
		return fetch.ErrNotFound
	case deniedCodes[code] || strings.HasPrefix(code, "ExpiredToken"):
		return fetch.ErrAccessDenied
	case invalidCodes[code]:
		return fetch.ErrInvalid
	case code == "" && (status == http.StatusForbidden || status == http.StatusUnauthorized):
		return fetch.ErrAccessDenied
	default:
		return nil
	}
}
