package gcpsmtest_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"

	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/keyhook/keyhook/pkg/fetch/gcpsm/gcpsmtest"
)

// TestTokenEndpoint checks the assertions the token endpoint refuses; the
// gcpsm tests cover the ones it accepts.
func TestTokenEndpoint(t *testing.T) {
	t.Parallel()
	srv := gcpsmtest.New(gcpsmtest.Options{})
	t.Cleanup(srv.Close)
	const email = "sa@keyhook-test.iam.gserviceaccount.com"
	key := srv.ServiceAccountKey(email)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(srv.CABundle())
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	})

	tests := []struct {
		name    string
		scopes  []string
		aud     string
		wantErr string
	}{
		{name: "valid", scopes: []string{gcpsmtest.ScopeCloudPlatform}},
		{name: "no cloud-platform scope", scopes: []string{"https://www.googleapis.com/auth/userinfo.email"}, wantErr: "Invalid OAuth scope"},
		{name: "wrong audience", scopes: []string{gcpsmtest.ScopeCloudPlatform}, aud: "https://example.com/token", wantErr: "audience"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := google.JWTConfigFromJSON(key, tt.scopes...)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Audience = tt.aud
			tok, err := cfg.TokenSource(ctx).Token()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Token: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Token = %v, want an error mentioning %q", err, tt.wantErr)
			case tt.wantErr == "" && !strings.HasPrefix(tok.AccessToken, "ya29."):
				t.Errorf("access token %q", tok.AccessToken)
			}
		})
	}
}

// TestUnservedMethods checks that what keyhook does not use is refused, not
// half-served.
func TestUnservedMethods(t *testing.T) {
	t.Parallel()
	srv := gcpsmtest.New(gcpsmtest.Options{})
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(srv.CABundle())
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = secretmanagerpb.NewSecretManagerServiceClient(conn).ListSecretVersions(context.Background(), &secretmanagerpb.ListSecretVersionsRequest{Parent: srv.SecretName("db")})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("ListSecretVersions = %v, want Unimplemented", err)
	}
}

// TestCallLog checks what the server records of each call, outcome
// included.
func TestCallLog(t *testing.T) {
	t.Parallel()
	srv := gcpsmtest.New(gcpsmtest.Options{})
	t.Cleanup(srv.Close)
	srv.Put("db", []byte("v1"))
	srv.Put("db", []byte("v2"))
	srv.Disable("db", 1)
	srv.Put("other", []byte("x"))
	srv.Allow("alice", "db", gcpsmtest.PermAccess)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(srv.CABundle())
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := secretmanagerpb.NewSecretManagerServiceClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+srv.AddToken("alice"))
	access := func(ctx context.Context, name string) {
		_, _ = client.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: name})
	}
	db := srv.SecretName("db")
	access(ctx, db+"/versions/2")
	access(ctx, db+"/versions/1")
	access(ctx, db+"/versions/3")
	access(ctx, srv.SecretName("other")+"/versions/1")
	access(context.Background(), db+"/versions/2")
	_, _ = client.GetSecretVersion(ctx, &secretmanagerpb.GetSecretVersionRequest{Name: db + "/versions/latest"})
	srv.Throttle(1)
	access(ctx, db+"/versions/latest")
	access(ctx, "projects/"+srv.ProjectID()+"/secrets/db")

	want := []gcpsmtest.Call{
		{Method: gcpsmtest.MethodAccessSecretVersion, Principal: "alice", Name: db + "/versions/2", Code: codes.OK},
		{Method: gcpsmtest.MethodAccessSecretVersion, Principal: "alice", Name: db + "/versions/1", Code: codes.FailedPrecondition},
		{Method: gcpsmtest.MethodAccessSecretVersion, Principal: "alice", Name: db + "/versions/3", Code: codes.NotFound},
		{Method: gcpsmtest.MethodAccessSecretVersion, Principal: "alice", Name: srv.SecretName("other") + "/versions/1", Code: codes.PermissionDenied},
		{Method: gcpsmtest.MethodAccessSecretVersion, Name: db + "/versions/2", Code: codes.Unauthenticated},
		{Method: gcpsmtest.MethodGetSecretVersion, Principal: "alice", Name: db + "/versions/latest", Code: codes.PermissionDenied},
		{Method: gcpsmtest.MethodAccessSecretVersion, Principal: "alice", Name: db + "/versions/latest", Code: codes.ResourceExhausted},
		{Method: gcpsmtest.MethodAccessSecretVersion, Principal: "alice", Name: "projects/" + srv.ProjectID() + "/secrets/db", Code: codes.InvalidArgument},
	}
	if diff := cmp.Diff(want, srv.Calls()); diff != "" {
		t.Errorf("calls mismatch (-want +got):\n%s", diff)
	}
	if n := srv.Count(gcpsmtest.MethodAccessSecretVersion); n != 7 {
		t.Errorf("Count = %d, want 7", n)
	}
}
