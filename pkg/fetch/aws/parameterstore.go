package aws

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/store/aws/awsagent"
)

// ParameterStore reads AWS Systems Manager Parameter Store with one set of
// credentials. SecureString parameters are decrypted (the identity needs
// kms:Decrypt on their key).
type ParameterStore struct {
	client *ssm.Client
	caller
	// describeDenied remembers that DescribeParameters is not allowed, so
	// that CurrentVersion stops asking.
	describeDenied atomic.Bool
}

var (
	_ fetch.Provider = (*ParameterStore)(nil)
)

// Close releases nothing: the SDK's connections are pooled per client and
// AWS credentials cannot be revoked.
func (p *ParameterStore) Close() error { return nil }

// GetSecret returns the value of the parameter ref.Key (a name or an ARN),
// decrypted. The version is selected as Parameter Store does, with a
// selector: "name:3" (version 3) or "name:label". The selector may be in
// ref.Key already or given as ref.Version (a number or a label); if both
// are given they must agree. Empty means the latest version.
func (p *ParameterStore) GetSecret(ctx context.Context, ref fetch.Ref) ([]byte, error) {
	name, sel, hasSel := awsagent.SplitSelector(ref.Key)
	if name == "" {
		return nil, fmt.Errorf("ssm: empty parameter name in %q: %w", ref.Key, fetch.ErrInvalid)
	}
	if hasSel && sel == "" {
		return nil, fmt.Errorf("ssm: parameter %q ends with ':' but names no version or label: %w", ref.Key, fetch.ErrInvalid)
	}
	if ref.Version != "" {
		if hasSel && sel != ref.Version {
			return nil, fmt.Errorf("ssm: parameter %q selects %q but version %q is requested: %w", ref.Key, sel, ref.Version, fetch.ErrInvalid)
		}
		sel = ref.Version
	}
	if strings.Contains(sel, ":") {
		return nil, fmt.Errorf("ssm: version %q of parameter %q is neither a number nor a label: %w", sel, name, fetch.ErrInvalid)
	}
	if n, err := strconv.ParseInt(sel, 10, 64); err == nil && n < 1 {
		return nil, fmt.Errorf("ssm: version %q of parameter %q is not a positive number: %w", sel, name, fetch.ErrInvalid)
	}
	full := name
	if sel != "" {
		full += ":" + sel
	}
	out, err := p.client.GetParameter(ctx, &ssm.GetParameterInput{Name: awssdk.String(full), WithDecryption: awssdk.Bool(true)})
	if err != nil {
		return nil, p.fail("GetParameter", fmt.Sprintf("%q", full), err)
	}
	if out.Parameter == nil || out.Parameter.Value == nil {
		return nil, fmt.Errorf("ssm GetParameter %q in %s: the answer holds no value: %w", full, p.region, fetch.ErrNotFound)
	}
	return []byte(*out.Parameter.Value), nil
}

// CurrentVersion returns the latest version number of the parameter key.
//
// It asks DescribeParameters (Name Equals key), which reads metadata only.
// DescribeParameters needs ssm:DescribeParameters on Resource "*", which a
// role scoped to a few parameters often lacks; when it is denied, and for
// ARNs (shared parameters, which DescribeParameters does not list by name),
// it falls back to GetParameter without decryption: a SecureString then
// stays ciphertext (no kms:Decrypt), but the value of a String parameter is
// transferred, and dropped.
func (p *ParameterStore) CurrentVersion(ctx context.Context, key string) (string, error) {
	name, _, hasSel := awsagent.SplitSelector(key)
	switch {
	case name == "":
		return "", fmt.Errorf("ssm: empty parameter name: %w", fetch.ErrInvalid)
	case hasSel:
		return "", fmt.Errorf("ssm: parameter %q pins a version, it has no current version to follow: %w", key, fetch.ErrInvalid)
	}
	if !strings.HasPrefix(name, "arn:") && !p.describeDenied.Load() {
		v, err := p.describe(ctx, name)
		if !errors.Is(err, fetch.ErrAccessDenied) {
			return v, err
		}
		p.describeDenied.Store(true)
	}
	out, err := p.client.GetParameter(ctx, &ssm.GetParameterInput{Name: awssdk.String(name), WithDecryption: awssdk.Bool(false)})
	if err != nil {
		return "", p.fail("GetParameter", fmt.Sprintf("%q", name), err)
	}
	if out.Parameter == nil {
		return "", fmt.Errorf("ssm GetParameter %q in %s: the answer holds no parameter: %w", name, p.region, fetch.ErrNotFound)
	}
	return strconv.FormatInt(out.Parameter.Version, 10), nil
}

// describe finds the version of name with DescribeParameters. Filters apply
// to each page after it is cut, so a page can come back empty with a
// NextToken: it reads on until the name shows up or the pages end.
func (p *ParameterStore) describe(ctx context.Context, name string) (string, error) {
	in := &ssm.DescribeParametersInput{
		ParameterFilters: []ssmtypes.ParameterStringFilter{{
			Key: awssdk.String("Name"), Option: awssdk.String("Equals"), Values: []string{name},
		}},
		MaxResults: awssdk.Int32(50),
	}
	pages := ssm.NewDescribeParametersPaginator(p.client, in, func(o *ssm.DescribeParametersPaginatorOptions) {
		o.StopOnDuplicateToken = true
	})
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return "", p.fail("DescribeParameters", fmt.Sprintf("%q", name), err)
		}
		for _, m := range out.Parameters {
			if awssdk.ToString(m.Name) == name {
				return strconv.FormatInt(m.Version, 10), nil
			}
		}
	}
	return "", fmt.Errorf("ssm DescribeParameters %q in %s as %s: no such parameter: %w", name, p.region, p.identity, fetch.ErrNotFound)
}

// Find returns the latest value of every parameter under path,
// recursively, decrypted and keyed by full name, with GetParametersByPath:
// one call per page of up to 10 parameters.
func (p *ParameterStore) Find(ctx context.Context, q fetch.FindQuery) (map[string][]byte, error) {
	if err := Capabilities(ServiceParameterStore).Find.Check(q); err != nil {
		return nil, err
	}
	path := q.Path
	if path == "" {
		return nil, fmt.Errorf("ssm: empty find path: %w", fetch.ErrInvalid)
	}
	in := &ssm.GetParametersByPathInput{
		Path:           awssdk.String(path),
		Recursive:      awssdk.Bool(true),
		WithDecryption: awssdk.Bool(true),
		MaxResults:     awssdk.Int32(10),
	}
	found := map[string][]byte{}
	pages := ssm.NewGetParametersByPathPaginator(p.client, in, func(o *ssm.GetParametersByPathPaginatorOptions) {
		o.StopOnDuplicateToken = true
	})
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return nil, p.fail("GetParametersByPath", fmt.Sprintf("%q", path), err)
		}
		for _, prm := range out.Parameters {
			if prm.Name != nil && prm.Value != nil {
				found[*prm.Name] = []byte(*prm.Value)
			}
		}
	}
	return found, nil
}
