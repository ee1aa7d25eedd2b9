package aws

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/keyhook/keyhook/pkg/fetch"
)

// stageCurrent is the version stage of a secret's current value.
const stageCurrent = "AWSCURRENT"

// SecretsManager reads AWS Secrets Manager with one set of credentials.
type SecretsManager struct {
	client *secretsmanager.Client
	caller
}

var (
	_ fetch.Provider = (*SecretsManager)(nil)
)

// Close releases nothing: the SDK's connections are pooled per client and
// AWS credentials cannot be revoked.
func (p *SecretsManager) Close() error { return nil }

// GetSecret returns the value of the secret ref.Key (a name or an ARN):
// SecretString as is (a JSON object is then picked apart by fetch.Property
// and fetch.Extract), SecretBinary as its raw bytes.
//
// ref.Version selects the version:
//   - empty: the version staged AWSCURRENT;
//   - "uuid/<id>" (as External Secrets Operator writes it) or a string of 32
//     to 64 hexadecimal digits and dashes (the shape of a VersionId): that
//     VersionId;
//   - anything else: that version stage, e.g. AWSPREVIOUS, AWSPENDING or a
//     custom label. A custom label that itself looks like a VersionId is
//     read as one; such labels are not supported.
func (p *SecretsManager) GetSecret(ctx context.Context, ref fetch.Ref) ([]byte, error) {
	if ref.Key == "" {
		return nil, fmt.Errorf("secretsmanager: empty secret name: %w", fetch.ErrInvalid)
	}
	in := &secretsmanager.GetSecretValueInput{SecretId: awssdk.String(ref.Key)}
	what := fmt.Sprintf("%q", ref.Key)
	switch id, isID := versionID(ref.Version); {
	case ref.Version == "":
		in.VersionStage = awssdk.String(stageCurrent)
	case isID:
		in.VersionId = awssdk.String(id)
		what += " version " + id
	default:
		in.VersionStage = awssdk.String(ref.Version)
		what += " stage " + ref.Version
	}
	out, err := p.client.GetSecretValue(ctx, in)
	if err != nil {
		return nil, p.fail("GetSecretValue", what, err)
	}
	if v, ok := value(out.SecretString, out.SecretBinary); ok {
		return v, nil
	}
	return nil, fmt.Errorf("secretsmanager GetSecretValue %s in %s: the version holds neither a string nor a binary value: %w", what, p.region, fetch.ErrNotFound)
}

// versionID tells whether a version selects a VersionId, and which.
func versionID(v string) (string, bool) {
	if id, ok := strings.CutPrefix(v, "uuid/"); ok {
		return id, true
	}
	if len(v) < 32 || len(v) > 64 {
		return "", false
	}
	for _, r := range v {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F' || r == '-') {
			return "", false
		}
	}
	return v, true
}

func value(s *string, b []byte) ([]byte, bool) {
	switch {
	case s != nil:
		return []byte(*s), true
	case b != nil:
		return b, true
	default:
		return nil, false
	}
}

// CurrentVersion returns the VersionId staged AWSCURRENT, from
// DescribeSecret: no value is read (and no secretsmanager:GetSecretValue
// nor kms:Decrypt is needed, only secretsmanager:DescribeSecret).
func (p *SecretsManager) CurrentVersion(ctx context.Context, key string) (string, error) {
	if key == "" {
		return "", fmt.Errorf("secretsmanager: empty secret name: %w", fetch.ErrInvalid)
	}
	out, err := p.client.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: awssdk.String(key)})
	if err != nil {
		return "", p.fail("DescribeSecret", fmt.Sprintf("%q", key), err)
	}
	for id, stages := range out.VersionIdsToStages {
		if slices.Contains(stages, stageCurrent) {
			return id, nil
		}
	}
	return "", fmt.Errorf("secretsmanager DescribeSecret %q in %s: no version is staged %s: %w", key, p.region, stageCurrent, fetch.ErrNotFound)
}

// batchSize is the most BatchGetSecretValue returns per call with filters.
const batchSize = 20

// Find returns the current value of every secret whose name starts with
// path, keyed by name, with BatchGetSecretValue: one call per page of up to
// 20 secrets. It needs secretsmanager:BatchGetSecretValue and
// secretsmanager:ListSecrets, and GetSecretValue on each secret; a secret
// that matches but cannot be read fails the whole Find with an error that
// names it.
func (p *SecretsManager) Find(ctx context.Context, q fetch.FindQuery) (map[string][]byte, error) {
	if err := Capabilities(ServiceSecretsManager).Find.Check(q); err != nil {
		return nil, err
	}
	path := q.Path
	if path == "" || strings.HasPrefix(path, "!") {
		// "!" would turn the filter into "every name but these".
		return nil, fmt.Errorf("secretsmanager: find path %q must be a non-empty name prefix not starting with '!': %w", path, fetch.ErrInvalid)
	}
	in := &secretsmanager.BatchGetSecretValueInput{
		Filters:    []smtypes.Filter{{Key: smtypes.FilterNameStringTypeName, Values: []string{path}}},
		MaxResults: awssdk.Int32(batchSize),
	}
	found := map[string][]byte{}
	pages := secretsmanager.NewBatchGetSecretValuePaginator(p.client, in, func(o *secretsmanager.BatchGetSecretValuePaginatorOptions) {
		o.StopOnDuplicateToken = true
	})
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return nil, p.fail("BatchGetSecretValue", fmt.Sprintf("name prefix %q", path), err)
		}
		var errs []error
		for _, e := range out.Errors {
			code := awssdk.ToString(e.ErrorCode)
			msg := fmt.Sprintf("secretsmanager BatchGetSecretValue: secret %q in %s as %s: %s", awssdk.ToString(e.SecretId), p.region, p.identity, code)
			if m := awssdk.ToString(e.Message); m != "" {
				msg += ": " + m
			}
			errs = append(errs, &callError{Msg: msg, Class: classOf(code, 0)})
		}
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		for _, sv := range out.SecretValues {
			name := awssdk.ToString(sv.Name)
			// The service matches "name" filters by prefix already; this
			// keeps Find's contract whatever the service's matching rules.
			if !strings.HasPrefix(name, path) {
				continue
			}
			if v, ok := value(sv.SecretString, sv.SecretBinary); ok {
				found[name] = v
			}
		}
	}
	return found, nil
}
