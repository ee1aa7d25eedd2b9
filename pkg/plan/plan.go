// Package plan is the contract between the webhook, which writes a Plan into
// the init container of an injected pod, and the init-agent, which reads it.
//
// A Plan names what to fetch, where to write it and how to authenticate. It
// never holds a secret value: it is stored in the pod spec, which anyone who
// can read pods can see. The package is dependency-light on purpose: the
// init-agent binary imports it and must stay small.
package plan

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// Version is the version of the Plan format written by this webhook. The agent
// refuses plans of any other version, so that a webhook and an agent image of
// different releases fail loudly instead of fetching the wrong thing.
const Version = "v1"

// EnvVar is the environment variable of the init container that holds the
// JSON-encoded Plan.
const EnvVar = "KEYHOOK_PLAN"

// Plan is everything the init-agent needs to do its job.
type Plan struct {
	// Version is the format version; see Version.
	Version string `json:"version"`
	// Secrets are fetched in order; each goes to its own directory.
	Secrets []Secret `json:"secrets"`
	// FileMode is the permission of every written file: 0400, or 0440 when
	// the pod sets an fsGroup so that containers of other users in the group
	// can read them.
	FileMode uint32 `json:"fileMode"`
}

// Secret is one ExternalSecret to fetch.
type Secret struct {
	// Name of the ExternalSecret, used in messages.
	Name string `json:"name"`
	// Dir is the absolute directory the files of this secret are written to.
	Dir string `json:"dir"`
	// Store says where to read from and how to authenticate.
	Store Store `json:"store"`
	// Data are single values, one file each.
	Data []Data `json:"data,omitempty"`
	// DataFrom are remote secrets expanded into one file per field.
	DataFrom []DataFrom `json:"dataFrom,omitempty"`
}

// Ref points at one remote secret.
type Ref struct {
	Key      string `json:"key"`
	Property string `json:"property,omitempty"`
	Version  string `json:"version,omitempty"`
}

// Data maps one remote value to one file.
type Data struct {
	SecretKey string `json:"secretKey"`
	Ref       Ref    `json:"remoteRef"`
}

// DataFrom expands one remote secret into files.
type DataFrom struct {
	Extract *Ref  `json:"extract,omitempty"`
	Find    *Find `json:"find,omitempty"`
}

// Find reads every remote secret under a path, one key each.
type Find struct {
	Path string `json:"path"`
	// Name is a regular expression the full name must match.
	Name string `json:"name,omitempty"`
	// Tags are labels (Google) or tags the secret must carry.
	Tags map[string]string `json:"tags,omitempty"`
}

// Store is the provider configuration the agent needs. Exactly one provider is set.
type Store struct {
	// Kind and Name of the store, used in messages.
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	Vault *Vault `json:"vault,omitempty"`
	AWS   *AWS   `json:"aws,omitempty"`
	GCPSM *GCPSM `json:"gcpsm,omitempty"`
}

// Provider names: the init-agent's build tags, the webhook's
// --agent-image-<provider> flags, and what Store.Provider returns.
const (
	ProviderVault = "vault"
	ProviderAWS   = "aws"
	ProviderGCPSM = "gcpsm"
)

// Provider is the name of the store's provider; "" when none is set.
func (s Store) Provider() string {
	switch {
	case s.Vault != nil:
		return ProviderVault
	case s.AWS != nil:
		return ProviderAWS
	case s.GCPSM != nil:
		return ProviderGCPSM
	}
	return ""
}

// AWS is how the agent reaches AWS Secrets Manager or Parameter Store.
type AWS struct {
	// Service is SecretsManager or ParameterStore.
	Service     string `json:"service"`
	Region      string `json:"region"`
	Endpoint    string `json:"endpoint,omitempty"`
	STSEndpoint string `json:"stsEndpoint,omitempty"`
	CABundle    string `json:"caBundle,omitempty"`
	// RoleARN, when set, is assumed with the credentials below.
	RoleARN string `json:"roleArn,omitempty"`
	// WebIdentity exchanges the pod's projected token for a role, as IRSA.
	WebIdentity *AWSWebIdentity `json:"webIdentity,omitempty"`
	// Static keys come from env vars of the init container set from
	// secretKeyRefs (never literals).
	AccessKeyIDEnv     string `json:"accessKeyIdEnv,omitempty"`
	SecretAccessKeyEnv string `json:"secretAccessKeyEnv,omitempty"`
	SessionTokenEnv    string `json:"sessionTokenEnv,omitempty"`
	// SessionName names the role session in CloudTrail.
	SessionName string `json:"sessionName,omitempty"`
}

// AWSWebIdentity is STS AssumeRoleWithWebIdentity with a projected token.
type AWSWebIdentity struct {
	RoleARN   string `json:"roleArn"`
	TokenPath string `json:"tokenPath"`
}

// GCPSM is how the agent reaches Google Secret Manager.
type GCPSM struct {
	ProjectID string `json:"projectID"`
	Endpoint  string `json:"endpoint,omitempty"`
	CABundle  string `json:"caBundle,omitempty"`
	// CredentialsEnv names an env var of the init container holding a
	// service-account key (from a secretKeyRef); empty means application
	// default credentials (workload identity).
	CredentialsEnv string `json:"credentialsEnv,omitempty"`
}

// Vault is how the agent reaches Vault.
type Vault struct {
	Server    string `json:"server"`
	Path      string `json:"path"`
	KVVersion int    `json:"kvVersion"`
	Namespace string `json:"namespace,omitempty"`
	// CABundle is PEM; public material.
	CABundle string `json:"caBundle,omitempty"`
	// Kubernetes auth: log in with the projected token at TokenPath.
	Kubernetes *VaultKubernetes `json:"kubernetes,omitempty"`
	// JWT auth: the same, through the jwt auth method.
	JWT *VaultKubernetes `json:"jwt,omitempty"`
	// AppRole auth: role id, and the secret id from an env var.
	AppRole *VaultAppRole `json:"appRole,omitempty"`
	// TokenEnv names an environment variable of the init container that
	// holds a Vault token (set from a secretKeyRef, never a literal).
	TokenEnv string `json:"tokenEnv,omitempty"`
}

// VaultAppRole is Vault's approle auth method.
type VaultAppRole struct {
	MountPath   string `json:"mountPath"`
	RoleID      string `json:"roleId"`
	SecretIDEnv string `json:"secretIdEnv"`
}

// VaultKubernetes is Vault's kubernetes (or jwt) auth method.
type VaultKubernetes struct {
	MountPath string `json:"mountPath"`
	Role      string `json:"role"`
	TokenPath string `json:"tokenPath"`
}

var secretKeyRE = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)

// Validate checks a plan the agent is about to execute. It guards the agent
// against a plan that would write outside its directories.
func (p *Plan) Validate() error {
	if p.Version != Version {
		return fmt.Errorf("plan version %q is not supported by this agent (want %q): use the init-agent image of the same keyhook release as the webhook", p.Version, Version)
	}
	if len(p.Secrets) == 0 {
		return errors.New("plan names no secrets")
	}
	if p.FileMode != 0o400 && p.FileMode != 0o440 {
		return fmt.Errorf("plan file mode %#o is not 0400 or 0440", p.FileMode)
	}
	for i, s := range p.Secrets {
		if s.Name == "" {
			return fmt.Errorf("secret %d: no name", i)
		}
		if !path.IsAbs(s.Dir) || path.Clean(s.Dir) != s.Dir {
			return fmt.Errorf("secret %s: dir %q is not a clean absolute path", s.Name, s.Dir)
		}
		if len(s.Data)+len(s.DataFrom) == 0 {
			return fmt.Errorf("secret %s: reads nothing", s.Name)
		}
		for _, d := range s.Data {
			if !ValidFileName(d.SecretKey) {
				return fmt.Errorf("secret %s: key %q is not a valid file name", s.Name, d.SecretKey)
			}
		}
		switch st := s.Store; {
		case st.Vault != nil:
			if st.Vault.Kubernetes == nil && st.Vault.JWT == nil && st.Vault.AppRole == nil && st.Vault.TokenEnv == "" {
				return fmt.Errorf("secret %s: store %s/%s has no auth", s.Name, st.Kind, st.Name)
			}
		case st.AWS != nil:
			if st.AWS.WebIdentity == nil && (st.AWS.AccessKeyIDEnv == "" || st.AWS.SecretAccessKeyEnv == "") {
				return fmt.Errorf("secret %s: store %s/%s has no auth", s.Name, st.Kind, st.Name)
			}
		case st.GCPSM != nil:
		default:
			return fmt.Errorf("secret %s: store %s/%s has no provider this agent supports", s.Name, s.Store.Kind, s.Store.Name)
		}
	}
	return nil
}

// ValidFileName reports whether a secret key can be written as a file name in
// a secret's directory: the character set of Secret data keys, and never "."
// or "..".
func ValidFileName(key string) bool {
	return secretKeyRE.MatchString(key) && key != "." && key != ".." && !strings.HasPrefix(key, "..")
}

// Encode returns the JSON form of a plan as stored in the pod spec.
func (p *Plan) Encode() (string, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("encoding plan: %w", err)
	}
	return string(b), nil
}

// Decode parses and validates a plan.
func Decode(s string) (*Plan, error) {
	var p Plan
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("decoding plan from $%s: %w", EnvVar, err)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}
