package aws

import (
	"context"
	"errors"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go"
)

// Probe checks, reading no secret value, that Secrets Manager answers and
// accepts the credentials: ListSecrets of at most one entry (names only).
// See probed for what passes.
func (p *SecretsManager) Probe(ctx context.Context) error {
	_, err := p.client.ListSecrets(ctx, &secretsmanager.ListSecretsInput{MaxResults: awssdk.Int32(1)})
	return p.probed("ListSecrets", err)
}

// Probe checks, reading no parameter value, that Parameter Store answers
// and accepts the credentials: DescribeParameters of at most one entry
// (names only). See probed for what passes.
func (p *ParameterStore) Probe(ctx context.Context) error {
	_, err := p.client.DescribeParameters(ctx, &ssm.DescribeParametersInput{MaxResults: awssdk.Int32(1)})
	return p.probed("DescribeParameters", err)
}

// probed judges a probe call. Listing needs a permission on Resource "*"
// that many readers lack, and AWS says AccessDenied only after it has
// verified the signature: so a denied listing still proves the endpoint
// reachable and the credentials valid, and passes. Invalid or expired
// credentials (UnrecognizedClientException, InvalidSignatureException,
// ExpiredToken...) and everything else fail.
func (c caller) probed(op string, err error) error {
	var apiErr smithy.APIError
	if err == nil || errors.As(err, &apiErr) && (apiErr.ErrorCode() == "AccessDeniedException" || apiErr.ErrorCode() == "AccessDenied") {
		return nil
	}
	return c.fail(op, "(store probe)", err)
}
