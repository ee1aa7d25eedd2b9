package gcpsm

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keyhook/keyhook/pkg/fetch"
)

func TestClassOf(t *testing.T) {
	t.Parallel()
	want := map[codes.Code]error{
		codes.NotFound:           fetch.ErrNotFound,
		codes.PermissionDenied:   fetch.ErrAccessDenied,
		codes.Unauthenticated:    fetch.ErrAccessDenied,
		codes.ResourceExhausted:  fetch.ErrThrottled,
		codes.InvalidArgument:    fetch.ErrInvalid,
		codes.FailedPrecondition: fetch.ErrInvalid,
		codes.OutOfRange:         fetch.ErrInvalid,
	}
	// Every other code, Unavailable, DeadlineExceeded, Internal, Unknown
	// and the rest, is transient.
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if got := classOf(c); got != want[c] {
			t.Errorf("classOf(%s) = %v, want %v", c, got, want[c])
		}
	}
}

func TestFail(t *testing.T) {
	t.Parallel()
	p := &Provider{project: "my-project", id: identity{name: "service account sa@my-project.iam.gserviceaccount.com"}}
	name := "projects/other-proj/secrets/db/versions/latest"

	err := p.fail(context.Background(), methodAccess, name, status.Error(codes.NotFound, "Secret [projects/1/secrets/db] not found or has no versions."))
	const want = "gcpsm AccessSecretVersion projects/other-proj/secrets/db/versions/latest in project other-proj as service account sa@my-project.iam.gserviceaccount.com: NotFound: Secret [projects/1/secrets/db] not found or has no versions.: not found"
	if err.Error() != want {
		t.Errorf("fail() =\n%s\nwant\n%s", err, want)
	}
	if !errors.Is(err, fetch.ErrNotFound) {
		t.Errorf("fail() = %v, want ErrNotFound", err)
	}
	var st interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &st) || st.GRPCStatus().Code() != codes.NotFound {
		t.Errorf("fail() does not wrap the gRPC status: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = p.fail(ctx, methodGet, name, status.Error(codes.Canceled, "context canceled"))
	if !errors.Is(err, context.Canceled) || fetch.Permanent(err) {
		t.Errorf("fail() after cancel = %v, want a transient error wrapping context.Canceled", err)
	}
}

func TestTokenError(t *testing.T) {
	t.Parallel()
	id := identity{name: "service account sa@p.iam.gserviceaccount.com", tokenURL: "https://oauth2.googleapis.com/token"}
	retrieve := func(code int, body string) error {
		return &oauth2.RetrieveError{Response: &http.Response{StatusCode: code}, Body: []byte(body)}
	}
	tests := []struct {
		name   string
		err    error
		class  error // nil: transient
		detail string
	}{
		{"invalid grant", retrieve(400, `{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`), fetch.ErrAccessDenied, "HTTP 400 invalid_grant: Invalid JWT Signature."},
		{"unauthorized client", retrieve(401, `{"error":"unauthorized_client"}`), fetch.ErrAccessDenied, "HTTP 401 unauthorized_client"},
		{"throttled", retrieve(429, ``), fetch.ErrThrottled, "HTTP 429"},
		{"server error", retrieve(503, `<html>busy</html>`), nil, "HTTP 503"},
		{"network", errors.New("dial tcp: connection refused"), nil, "connection refused"},
		{"deadline", context.DeadlineExceeded, nil, "deadline exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tokenError(id, tt.err)
			if tt.class != nil && !errors.Is(err, tt.class) || tt.class == nil && fetch.Permanent(err) {
				t.Errorf("tokenError = %v, want class %v", err, tt.class)
			}
			for _, m := range []string{id.name, id.tokenURL, tt.detail} {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("tokenError %q does not mention %q", err, m)
				}
			}
			if strings.Contains(err.Error(), "<html>") {
				t.Errorf("tokenError %q quotes the answer's body", err)
			}
		})
	}
	if err := tokenError(id, context.DeadlineExceeded); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("tokenError does not wrap the context's error: %v", err)
	}
}

// TestPerRPCTokenCodes checks the gRPC codes token failures become: gRPC
// would make them all Unauthenticated, and so access denied, otherwise.
func TestPerRPCTokenCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{"refused", &oauth2.RetrieveError{Response: &http.Response{StatusCode: 400}, Body: []byte(`{"error":"invalid_grant"}`)}, codes.Unauthenticated},
		{"throttled", &oauth2.RetrieveError{Response: &http.Response{StatusCode: 429}}, codes.ResourceExhausted},
		{"network", errors.New("connection reset"), codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &perRPCToken{ts: failingSource{tt.err}, id: identity{name: "x"}}
			_, err := c.GetRequestMetadata(context.Background())
			if got := status.Code(err); got != tt.want {
				t.Errorf("code = %s, want %s (%v)", got, tt.want, err)
			}
		})
	}
}

type failingSource struct{ err error }

func (s failingSource) Token() (*oauth2.Token, error) { return nil, s.err }
