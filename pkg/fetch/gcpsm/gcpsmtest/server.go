// Package gcpsmtest is an in-process fake of Google Secret Manager and of
// Google's OAuth2 token endpoint, for tests that drive the real Secret
// Manager client (cloud.google.com/go/secretmanager/apiv1).
//
// It serves the SecretManagerService gRPC API on a loopback TLS listener and
// the token endpoint (the JWT-bearer grant service-account keys use) over
// HTTPS, both with certificates of a CA made for the server alone. Every
// gRPC call must carry a bearer token the server issued; it is then
// authorised against per-principal grants, so that credential, permission
// and throttling failures look as they do against Google. Only what keyhook
// uses is served: AccessSecretVersion, GetSecretVersion and ListSecrets
// (filtered by labels). Every other method answers Unimplemented.
//
// A typical test:
//
//	srv := gcpsmtest.New(gcpsmtest.Options{})
//	t.Cleanup(srv.Close)
//	key := srv.ServiceAccountKey("reader@keyhook-test.iam.gserviceaccount.com")
//	srv.Allow("reader@keyhook-test.iam.gserviceaccount.com", "db-password")
//	srv.Put("db-password", []byte("s3cret"))
//	// point the client at srv.Addr(), trusting srv.CABundle(), with key as
//	// its service-account key (its token_uri is srv.TokenURL()).
package gcpsmtest

import (
	"crypto/rsa"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
)

// Methods as recorded in Call.Method.
const (
	MethodAccessSecretVersion = "AccessSecretVersion"
	MethodGetSecretVersion    = "GetSecretVersion"
	MethodListSecrets         = "ListSecrets"
	// MethodToken is a request to the OAuth2 token endpoint.
	MethodToken = "token"
)

// IAM permissions that Allow grants.
const (
	// PermAccess reads a version's value (AccessSecretVersion); in
	// roles/secretmanager.secretAccessor.
	PermAccess = "secretmanager.versions.access"
	// PermGet reads a version's metadata (GetSecretVersion); in
	// roles/secretmanager.viewer, not in secretAccessor.
	PermGet = "secretmanager.versions.get"
	// PermList lists the secrets of the project (ListSecrets); in
	// roles/secretmanager.viewer. Allow grants it only when asked, on "*".
	PermList = "secretmanager.secrets.list"
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// ProjectID of the one project the server holds. Default
	// "keyhook-test".
	ProjectID string
	// ProjectNumber of that project. Requests may name the project by ID
	// or number; like Google, the server answers with names that hold the
	// number. Default "123456789012".
	ProjectNumber string
	// TokenLifetime of the access tokens the server issues. Default one
	// hour.
	TokenLifetime time.Duration
	// Now is the server's clock. Default time.Now.
	Now func() time.Time
}

// Call is one request as the server saw it.
type Call struct {
	// Method is one of the Method constants.
	Method string
	// Principal is the authenticated caller (a service-account email or
	// the principal given to AddToken); empty when authentication failed.
	Principal string
	// Name is the resource name requested, as the client sent it; empty
	// for MethodToken.
	Name string
	// Code is the gRPC code answered; for MethodToken, OK when a token was
	// issued and Unauthenticated when the grant was refused.
	Code codes.Code
}

// Server is a fake of Secret Manager and of the token endpoint. All methods
// are safe for concurrent use.
type Server struct {
	secretmanagerpb.UnimplementedSecretManagerServiceServer

	opts  Options
	caPEM []byte
	grpc  *grpc.Server
	lis   net.Listener
	http  *httptest.Server

	mu       sync.Mutex
	secrets  map[string]*secretEntry       // by secret ID
	grants   map[string]map[string]bool    // principal → "secret\x00perm"
	keys     map[string]*serviceAccountKey // by private_key_id
	tokens   map[string]*accessToken       // by token
	throttle int
	corrupt  int
	calls    []Call
}

type serviceAccountKey struct {
	email   string
	public  *rsa.PublicKey
	revoked bool
}

type accessToken struct {
	principal string
	expires   time.Time
}

// New starts a Server on loopback listeners. It panics if it cannot: that
// is a broken test machine, not a test failure. Close it when done.
func New(opts Options) *Server {
	if opts.ProjectID == "" {
		opts.ProjectID = "keyhook-test"
	}
	if opts.ProjectNumber == "" {
		opts.ProjectNumber = "123456789012"
	}
	if opts.TokenLifetime <= 0 {
		opts.TokenLifetime = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c, err := newCerts()
	if err != nil {
		panic(fmt.Sprintf("gcpsmtest: making certificates: %v", err))
	}
	s := &Server{
		opts:    opts,
		caPEM:   c.caPEM,
		secrets: map[string]*secretEntry{},
		grants:  map[string]map[string]bool{},
		keys:    map[string]*serviceAccountKey{},
		tokens:  map[string]*accessToken{},
	}

	tlsCfg := &tls.Config{Certificates: []tls.Certificate{c.leaf}, MinVersion: tls.VersionTLS12}
	s.lis, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("gcpsmtest: listening: %v", err))
	}
	s.grpc = grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)))
	secretmanagerpb.RegisterSecretManagerServiceServer(s.grpc, s)
	go func() { _ = s.grpc.Serve(s.lis) }()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", s.serveToken)
	s.http = httptest.NewUnstartedServer(mux)
	s.http.TLS = tlsCfg.Clone()
	// Clients that go away mid-handshake (a test's untrusting client) make
	// the server log; that is noise in test output.
	s.http.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.http.StartTLS()
	return s
}

// Close stops both listeners, ending open calls.
func (s *Server) Close() {
	s.grpc.Stop()
	s.http.Close()
}

// Addr is the host:port of the Secret Manager gRPC endpoint.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// TokenURL is the OAuth2 token endpoint, as written into the token_uri of
// the keys ServiceAccountKey makes.
func (s *Server) TokenURL() string { return s.http.URL + "/token" }

// CABundle is the PEM of the CA that signed the certificate of both
// endpoints.
func (s *Server) CABundle() []byte { return append([]byte(nil), s.caPEM...) }

// ProjectID of the project the server holds.
func (s *Server) ProjectID() string { return s.opts.ProjectID }

// ProjectNumber of the project the server holds.
func (s *Server) ProjectNumber() string { return s.opts.ProjectNumber }

// Allow grants principal perms (PermAccess, PermGet) on secret, a secret
// ID or "*" for every secret of the project. Without perms it grants both,
// as roles/secretmanager.secretAccessor and roles/secretmanager.viewer
// together do.
func (s *Server) Allow(principal, secret string, perms ...string) {
	if len(perms) == 0 {
		perms = []string{PermAccess, PermGet}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.grants[principal]
	if g == nil {
		g = map[string]bool{}
		s.grants[principal] = g
	}
	for _, p := range perms {
		g[secret+"\x00"+p] = true
	}
}

// allowed reports whether principal holds perm on the secret ID. The
// caller holds s.mu.
func (s *Server) allowed(principal, secretID, perm string) bool {
	g := s.grants[principal]
	return g[secretID+"\x00"+perm] || g["*\x00"+perm]
}

// Throttle makes the next n Secret Manager calls fail with
// ResourceExhausted, after authentication, as quota errors do. The token
// endpoint is not throttled.
func (s *Server) Throttle(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttle = n
}

// CorruptChecksum makes the next n successful AccessSecretVersion answers
// carry a data_crc32c that does not match their data.
func (s *Server) CorruptChecksum(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.corrupt = n
}

// Calls returns every request received so far, in order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// Count counts the requests received for method (a Method constant),
// whatever their outcome.
func (s *Server) Count(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		if c.Method == method {
			n++
		}
	}
	return n
}

// record appends a call. The caller holds s.mu.
func (s *Server) record(c Call) { s.calls = append(s.calls, c) }
