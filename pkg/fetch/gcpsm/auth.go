package gcpsm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/keyhook/keyhook/pkg/fetch"
)

// scope is the OAuth2 scope of the access tokens requested. Secret Manager
// accepts no narrower one; IAM on the secrets decides what can be read.
const scope = "https://www.googleapis.com/auth/cloud-platform"

// tokenTimeout bounds one request to the token endpoint. The OAuth2
// libraries send it without a context, so this is all that ends a hung one.
const tokenTimeout = 30 * time.Second

// identity is who the provider reads as, for messages: a service-account
// email or "application default credentials", never a key or token.
type identity struct {
	name     string
	tokenURL string // where tokens come from, if known
}

// keyFile is the part of a service-account key file that is checked
// before use. The key itself is only parsed, never kept or shown.
type keyFile struct {
	Type         string `json:"type"`
	ClientEmail  string `json:"client_email"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	TokenURI     string `json:"token_uri"`
}

// tokenSource builds, from cfg, the token source every call uses and names
// the identity it stands for. ctx only carries the HTTP client for the
// token endpoint: the source outlives New, so it must not hold New's ctx.
func tokenSource(cfg Config, httpClient *http.Client) (oauth2.TokenSource, identity, error) {
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, httpClient)
	switch {
	case cfg.TokenSource != nil && len(cfg.CredentialsJSON) > 0:
		return nil, identity{}, fmt.Errorf("gcpsm: both credentialsJSON and a token source are set, set one: %w", fetch.ErrInvalid)
	case cfg.TokenSource != nil:
		return cfg.TokenSource, identity{name: "the configured token source"}, nil
	case len(cfg.CredentialsJSON) > 0:
		kf, err := checkKeyFile(cfg.CredentialsJSON)
		if err != nil {
			return nil, identity{}, err
		}
		// JWTConfigFromJSON accepts only "service_account" keys: a key
		// file of another type (external_account can name a command to
		// run or a URL to fetch) is never acted on, as Google asks of
		// credentials that come from users.
		jwtCfg, err := google.JWTConfigFromJSON(cfg.CredentialsJSON, scope)
		if err != nil {
			return nil, identity{}, fmt.Errorf("gcpsm: credentialsJSON of service account %s: not a usable service-account key: %w", kf.ClientEmail, fetch.ErrInvalid)
		}
		return jwtCfg.TokenSource(ctx), identity{name: "service account " + kf.ClientEmail, tokenURL: jwtCfg.TokenURL}, nil
	default:
		creds, err := google.FindDefaultCredentials(ctx, scope)
		if err != nil {
			return nil, identity{}, &callError{Msg: "gcpsm: no application default credentials (workload identity, GOOGLE_APPLICATION_CREDENTIALS or gcloud's): " + err.Error(), Class: fetch.ErrAccessDenied}
		}
		id := identity{name: "application default credentials"}
		var kf keyFile
		if json.Unmarshal(creds.JSON, &kf) == nil && kf.ClientEmail != "" {
			id.name += " (service account " + kf.ClientEmail + ")"
		}
		return creds.TokenSource, id, nil
	}
}

// checkKeyFile checks a service-account key file enough for its errors to
// be ErrInvalid and say which field is wrong. Messages name the account,
// never the key; the JSON decoder's own errors can quote the input, so
// they are not passed on.
func checkKeyFile(b []byte) (keyFile, error) {
	var kf keyFile
	if err := json.Unmarshal(b, &kf); err != nil {
		return kf, fmt.Errorf("gcpsm: credentialsJSON is not a JSON service-account key file: %w", fetch.ErrInvalid)
	}
	if kf.Type != "service_account" {
		return kf, fmt.Errorf("gcpsm: credentialsJSON has type %q; only \"service_account\" keys are accepted (for workload identity, leave it empty): %w", kf.Type, fetch.ErrInvalid)
	}
	if kf.ClientEmail == "" {
		return kf, fmt.Errorf("gcpsm: credentialsJSON has no client_email: %w", fetch.ErrInvalid)
	}
	block, _ := pem.Decode([]byte(kf.PrivateKey))
	if block == nil {
		return kf, fmt.Errorf("gcpsm: credentialsJSON of service account %s: private_key is not PEM: %w", kf.ClientEmail, fetch.ErrInvalid)
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
			return kf, fmt.Errorf("gcpsm: credentialsJSON of service account %s: private_key is not a PKCS#8 or PKCS#1 private key: %w", kf.ClientEmail, fetch.ErrInvalid)
		}
	}
	if kf.TokenURI != "" {
		if u, err := url.Parse(kf.TokenURI); err != nil || u.Scheme != "https" || u.Host == "" {
			return kf, fmt.Errorf("gcpsm: credentialsJSON of service account %s: token_uri %q is not an https:// URL: %w", kf.ClientEmail, kf.TokenURI, fetch.ErrInvalid)
		}
	}
	return kf, nil
}

// tokenHTTPClient is the client for the token endpoint. It trusts the
// system roots and the CA bundle: the bundle is for the Secret Manager
// endpoint, which may be private while tokens still come from Google.
func tokenHTTPClient(caBundle []byte) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if len(caBundle) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pool.AppendCertsFromPEM(caBundle)
		t.TLSClientConfig.RootCAs = pool
	}
	// Proxies come from the environment as for any HTTP client of the
	// process (http.DefaultTransport's ProxyFromEnvironment).
	return &http.Client{Transport: t, Timeout: tokenTimeout}
}

// token gets a token from ts, giving up when ctx ends. The OAuth2 sources
// take no context; the abandoned fetch ends with tokenTimeout.
func token(ctx context.Context, ts oauth2.TokenSource) (*oauth2.Token, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type result struct {
		tok *oauth2.Token
		err error
	}
	ch := make(chan result, 1)
	go func() {
		tok, err := ts.Token()
		ch <- result{tok, err}
	}()
	select {
	case r := <-ch:
		if r.err == nil && (r.tok == nil || r.tok.AccessToken == "") {
			r.err = errors.New("the token endpoint answered no access token")
		}
		return r.tok, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// tokenError describes a failure to get a token: refused grants are
// ErrAccessDenied, HTTP 429 ErrThrottled, the rest (network, TLS, 5xx)
// transient. It quotes the endpoint's error code and description, never
// the raw answer.
func tokenError(id identity, err error) *callError {
	prefix := "gcpsm: getting an access token for " + id.name
	if id.tokenURL != "" {
		prefix += " from " + id.tokenURL
	}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		ce := &callError{Msg: prefix + ": " + err.Error()}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			ce.Err = err
		}
		return ce
	}
	code := 0
	if re.Response != nil {
		code = re.Response.StatusCode
	}
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(re.Body, &body)
	detail := fmt.Sprintf("HTTP %d", code)
	if body.Error != "" {
		detail += " " + body.Error
	}
	if body.Description != "" {
		detail += ": " + body.Description
	}
	ce := &callError{Msg: prefix + ": " + detail}
	switch {
	case code == http.StatusTooManyRequests:
		ce.Class = fetch.ErrThrottled
	case code >= 400 && code < 500:
		ce.Class = fetch.ErrAccessDenied
	}
	return ce
}

// perRPCToken puts a bearer token on every call. A failure to get one is
// turned into a gRPC status with the code of its class (Unauthenticated,
// ResourceExhausted, Unavailable): left alone, gRPC would make every such
// failure Unauthenticated, and a network blip at the token endpoint would
// look like revoked credentials.
type perRPCToken struct {
	ts oauth2.TokenSource
	id identity
}

var _ credentials.PerRPCCredentials = (*perRPCToken)(nil)

func (c *perRPCToken) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	tok, err := token(ctx, c.ts)
	if err != nil {
		te := tokenError(c.id, err)
		code := codes.Unavailable
		switch {
		case errors.Is(te.Class, fetch.ErrAccessDenied):
			code = codes.Unauthenticated
		case errors.Is(te.Class, fetch.ErrThrottled):
			code = codes.ResourceExhausted
		case ctx.Err() != nil:
			code = status.FromContextError(ctx.Err()).Code()
		}
		return nil, status.Error(code, te.Msg)
	}
	return map[string]string{"authorization": tok.Type() + " " + tok.AccessToken}, nil
}

func (c *perRPCToken) RequireTransportSecurity() bool { return true }
