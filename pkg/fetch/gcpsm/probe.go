package gcpsm

import (
	"context"
	"errors"

	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Probe checks, reading no secret value, that Secret Manager answers and
// accepts the provider's token (New already obtained one, so the
// credentials themselves are good): ListSecrets of the store's project, one
// entry (names and labels only). A PermissionDenied still proves both
// (Google checks the token before the permission) and passes: listing
// needs secretmanager.secrets.list, which readers of single secrets
// (roles/secretmanager.secretAccessor) lack.
func (p *Provider) Probe(ctx context.Context) error {
	parent := "projects/" + p.project
	it := p.client.ListSecrets(ctx, &secretmanagerpb.ListSecretsRequest{Parent: parent, PageSize: 1}, noRetry)
	_, err := it.Next()
	if err == nil || errors.Is(err, iterator.Done) || status.Code(err) == codes.PermissionDenied {
		return nil
	}
	return p.fail(ctx, "ListSecrets", parent, err)
}
