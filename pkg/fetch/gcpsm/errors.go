package gcpsm

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keyhook/keyhook/pkg/fetch"
)

// callError is fetch.CallError, the error every provider call returns.
type callError = fetch.CallError

// classOf maps a gRPC code onto fetch's classes; nil means transient.
func classOf(c codes.Code) error {
	switch c {
	case codes.NotFound:
		return fetch.ErrNotFound
	case codes.PermissionDenied, codes.Unauthenticated:
		return fetch.ErrAccessDenied
	case codes.ResourceExhausted:
		return fetch.ErrThrottled
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		// FailedPrecondition is a disabled or destroyed version: it stays
		// so until someone enables the version or points the ref at
		// another one.
		return fetch.ErrInvalid
	default:
		return nil
	}
}

// fail describes a failed call of method on name (a version's full name)
// and classifies it. The message is the method, the name, the project and
// identity, then the gRPC code and the service's message (which names
// resources and permissions, never values) and a hint for the usual fix.
func (p *Provider) fail(ctx context.Context, method, name string, err error) error {
	st := status.Convert(err)
	project := p.project
	if n, ok := parseFull(name); ok {
		project = n.project
	}
	msg := fmt.Sprintf("gcpsm %s %s in project %s as %s: %s: %s", method, name, project, p.id.name, st.Code(), st.Message())
	if h := hint(method, st.Code(), p.id); h != "" {
		msg += " (" + h + ")"
	}
	ce := &callError{Msg: msg, Class: classOf(st.Code()), Err: err}
	if ctxErr := ctx.Err(); ctxErr != nil {
		// gRPC's status errors do not wrap the context's error;
		// errors.Is(err, context.DeadlineExceeded) should still hold.
		ce.Err = errors.Join(err, ctxErr)
	}
	return ce
}

func hint(method string, c codes.Code, id identity) string {
	switch {
	case c == codes.PermissionDenied && method == methodAccess:
		return id.name + " needs secretmanager.versions.access on the secret, e.g. roles/secretmanager.secretAccessor"
	case c == codes.PermissionDenied && method == methodGet:
		return "reading the current version needs secretmanager.versions.get, e.g. roles/secretmanager.viewer, which roles/secretmanager.secretAccessor does not include"
	case c == codes.PermissionDenied && method == methodList:
		return "dataFrom.find lists the project's secrets, which needs secretmanager.secrets.list on the project, e.g. roles/secretmanager.viewer"
	case c == codes.Unauthenticated:
		return "the credentials of " + id.name + " were refused"
	default:
		return ""
	}
}
