// Package gcpsm reads secrets from Google Secret Manager.
//
// Credentials come from Config: a service-account key, or, when none is
// given, application default credentials (on GKE, workload identity: the
// Kubernetes service account's bound Google service account). An access
// token is obtained once, in New, and reused until it expires, for every
// call the provider makes.
//
// The provider dials Secret Manager itself (gRPC over TLS, with the
// configured CA bundle) and hands the connection to the Google client, so
// that nothing else decides where it connects or which credentials it
// sends: no mTLS or S2A auto-configuration, no self-signed JWTs instead of
// the token the key grants, no environment-driven endpoints.
package gcpsm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"github.com/googleapis/gax-go/v2"
	"golang.org/x/oauth2"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/keyhook/keyhook/pkg/fetch"
	storegcpsm "github.com/keyhook/keyhook/pkg/store/gcpsm/gcpsmagent"
)

// DefaultEndpoint is Secret Manager's global endpoint.
const DefaultEndpoint = "secretmanager.googleapis.com:443"

// Config says which project to read, where, and as whom; it is
// pkg/store/gcpsm's, which builds it from a store without this SDK.
type Config = storegcpsm.Config

// Provider reads Secret Manager with one identity. Its methods are safe for
// concurrent use.
type Provider struct {
	client         *secretmanager.Client
	project        string
	ownProjectOnly bool
	id             identity
}

var _ fetch.Provider = (*Provider)(nil)

// Capabilities declares what a Google Secret Manager store can do: find by
// name prefix, name and labels (tags), and versions.
func Capabilities() fetch.Capabilities { return storegcpsm.Capabilities() }

// Method names, as error messages give them.
const (
	methodAccess = "AccessSecretVersion"
	methodGet    = "GetSecretVersion"
	methodList   = "ListSecrets"
)

// noRetry turns the client's own retries off (it retries
// AccessSecretVersion on Unavailable and ResourceExhausted for up to a
// minute): callers retry with their own backoff, jitter and deadline, and
// count throttling, which hidden retries would hide.
var noRetry = gax.WithRetry(func() gax.Retryer { return nil })

// New returns a *Provider for cfg. It gets an access token before it
// returns, so that bad credentials fail here, with an error wrapping
// fetch.ErrAccessDenied that names the service account (never the key);
// that token is reused for every call until it expires. Close the
// provider when done with it.
func New(ctx context.Context, cfg Config) (fetch.Provider, error) {
	endpoint, tlsCfg, err := validate(cfg)
	if err != nil {
		return nil, err
	}
	ts, id, err := tokenSource(cfg, tokenHTTPClient(cfg.CABundle))
	if err != nil {
		return nil, err
	}
	tok, err := token(ctx, ts)
	if err != nil {
		return nil, tokenError(id, err)
	}
	// Seed the cache with the token just obtained: the first call does not
	// ask for another one.
	ts = oauth2.ReuseTokenSource(tok, ts)

	conn, err := grpc.NewClient(endpoint,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithPerRPCCredentials(&perRPCToken{ts: ts, id: id}),
	)
	if err != nil {
		return nil, fmt.Errorf("gcpsm: endpoint %q: %v: %w", endpoint, err, fetch.ErrInvalid)
	}
	client, err := secretmanager.NewClient(ctx,
		option.WithGRPCConn(conn),
		// The client logs whole responses, secret payloads included, when
		// GOOGLE_SDK_GO_LOGGING_LEVEL=debug; none of it may reach a log.
		option.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("gcpsm: creating the Secret Manager client: %w", err)
	}
	return &Provider{client: client, project: cfg.ProjectID, ownProjectOnly: cfg.OwnProjectOnly, id: id}, nil
}

// validate checks cfg and returns the endpoint to dial and its TLS
// configuration.
func validate(cfg Config) (string, *tls.Config, error) {
	if !projectRE.MatchString(cfg.ProjectID) {
		return "", nil, fmt.Errorf("gcpsm: projectID %q is not a project ID (6-30 lowercase letters, digits and '-', starting with a letter) nor a project number: %w", cfg.ProjectID, fetch.ErrInvalid)
	}
	endpoint := cfg.Endpoint
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	host, port, err := net.SplitHostPort(endpoint)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || strings.ContainsAny(host, "/@") || perr != nil || n < 1 || n > 65535 {
		return "", nil, fmt.Errorf("gcpsm: endpoint %q is not host:port (e.g. %s, without https://): %w", cfg.Endpoint, DefaultEndpoint, fetch.ErrInvalid)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(cfg.CABundle) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.CABundle) {
			return "", nil, fmt.Errorf("gcpsm: caBundle holds no PEM certificate: %w", fetch.ErrInvalid)
		}
		tlsCfg.RootCAs = pool
	}
	return endpoint, tlsCfg, nil
}

// GetSecret returns the payload of one version of a secret, as stored
// (text or binary); a JSON payload is picked apart by fetch.Property and
// fetch.Extract, not here.
//
// ref.Key is a secret ID, read from Config.ProjectID, or a full name
// projects/<project>/secrets/<secret>, optionally with /versions/<v>.
// ref.Version is "" or "latest" (the most recently created version), a
// version number, a version alias, or the full name of a version of that
// same secret.
//
// The payload's CRC32C is checked when the service sends one; a mismatch
// is a transient error.
func (p *Provider) GetSecret(ctx context.Context, ref fetch.Ref) ([]byte, error) {
	name, err := p.versionName(ref)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: name}, noRetry)
	if err != nil {
		return nil, p.fail(ctx, methodAccess, name, err)
	}
	payload := resp.GetPayload()
	data := payload.GetData()
	if want := payload.DataCrc32C; want != nil && int64(crc32.Checksum(data, castagnoli)) != *want {
		return nil, &callError{Msg: fmt.Sprintf("gcpsm %s %s as %s: checksum mismatch: the payload does not match its CRC32C, it was corrupted on the way", methodAccess, name, p.id.name)}
	}
	return data, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// versionName is the version ref reads, refused when it lies in another
// project than the store's and the provider may read its own only.
func (p *Provider) versionName(ref fetch.Ref) (string, error) {
	name, err := versionName(ref, p.project)
	if err != nil {
		return "", err
	}
	if p.ownProjectOnly && !strings.HasPrefix(name, "projects/"+p.project+"/") {
		return "", fmt.Errorf("gcpsm: key %q names another project than the store's %q, which this store may not read: %w", ref.Key, p.project, fetch.ErrAccessDenied)
	}
	return name, nil
}

// CurrentVersion returns the full name of the version key resolves to
// (that "latest", or a version the key pins, names), e.g.
// projects/123456789012/secrets/db/versions/7, from GetSecretVersion: no
// value is read. This needs secretmanager.versions.get (e.g.
// roles/secretmanager.viewer), which roles/secretmanager.secretAccessor
// does not include. A version that is disabled or destroyed is an error
// wrapping fetch.ErrInvalid, as reading it would be.
func (p *Provider) CurrentVersion(ctx context.Context, key string) (string, error) {
	name, err := p.versionName(fetch.Ref{Key: key})
	if err != nil {
		return "", err
	}
	v, err := p.client.GetSecretVersion(ctx, &secretmanagerpb.GetSecretVersionRequest{Name: name}, noRetry)
	if err != nil {
		return "", p.fail(ctx, methodGet, name, err)
	}
	switch {
	case v.GetName() == "":
		return "", &callError{Msg: fmt.Sprintf("gcpsm %s %s as %s: the answer names no version", methodGet, name, p.id.name)}
	case v.GetState() != secretmanagerpb.SecretVersion_ENABLED:
		return "", fmt.Errorf("gcpsm %s %s: version %s is %s, it cannot be read: %w", methodGet, name, v.GetName(), v.GetState(), fetch.ErrInvalid)
	}
	return v.GetName(), nil
}

// labelKeyRE and labelValueRE are what Google allows in labels (lowercase
// ASCII here): checked before a tag goes into a ListSecrets filter, so that
// no value can change the filter's meaning ("x OR name:y").
var (
	labelKeyRE   = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	labelValueRE = regexp.MustCompile(`^[a-z0-9_-]{0,63}$`)
)

// Find returns the latest version of every secret of the store's project
// whose ID starts with q.Path and matches q.Name, and whose labels include
// q.Tags, keyed by secret ID. ListSecrets filters by labels on the server
// (Secret Manager's filters have no regular expressions); the prefix and
// name are matched here. It needs secretmanager.secrets.list on the
// project (roles/secretmanager.viewer) and secretmanager.versions.access on
// each match. A secret without an enabled latest version is left out. At
// most fetch.MaxFound secrets.
func (p *Provider) Find(ctx context.Context, q fetch.FindQuery) (map[string][]byte, error) {
	if err := Capabilities().Find.Check(q); err != nil {
		return nil, err
	}
	match, err := q.Matcher()
	if err != nil {
		return nil, err
	}
	terms := make([]string, 0, len(q.Tags))
	for _, k := range slices.Sorted(maps.Keys(q.Tags)) {
		if !labelKeyRE.MatchString(k) || !labelValueRE.MatchString(q.Tags[k]) {
			return nil, fmt.Errorf("gcpsm: find tag %q=%q is not a Google label (lowercase letters, digits, '_' and '-'; keys start with a letter): %w", k, q.Tags[k], fetch.ErrInvalid)
		}
		terms = append(terms, "labels."+k+"="+q.Tags[k])
	}
	parent := "projects/" + p.project
	it := p.client.ListSecrets(ctx, &secretmanagerpb.ListSecretsRequest{Parent: parent, Filter: strings.Join(terms, " AND "), PageSize: 250}, noRetry)
	var ids []string
	for {
		s, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, p.fail(ctx, methodList, parent, err)
		}
		n, ok := parseFull(s.GetName())
		if !ok || !match(n.secret) {
			continue
		}
		if ids = append(ids, n.secret); len(ids) > fetch.MaxFound {
			return nil, fmt.Errorf("gcpsm: find %q in project %s: more than %d secrets; narrow the path, name or tags: %w", q.Path, p.project, fetch.MaxFound, fetch.ErrInvalid)
		}
	}
	out := make(map[string][]byte, len(ids))
	for _, id := range ids {
		v, err := p.GetSecret(ctx, fetch.Ref{Key: id})
		if errors.Is(err, fetch.ErrNotFound) {
			continue // no versions (yet), or deleted since the list
		}
		if err != nil {
			return nil, err
		}
		out[id] = v
	}
	return out, nil
}

// Close closes the connection to Secret Manager.
func (p *Provider) Close() error {
	return p.client.Close()
}
