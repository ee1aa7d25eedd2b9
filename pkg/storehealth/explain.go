package storehealth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/resolve"
)

// Reasons of a store's Ready condition.
const (
	// ReasonValid: the store logged in and passed its capability check
	// (External Secrets Operator's name for a healthy store).
	ReasonValid = "Valid"
	// ReasonReachable: a ClusterSecretStore whose login depends on the
	// namespace using it (a service account of that namespace) answers;
	// each ExternalSecret's Ready condition reports its own login.
	ReasonReachable = "Reachable"
	// ReasonNotProbed: the store has no login keyhook may make on its own:
	// a ClusterSecretStore of AWS or Google whose login uses each
	// namespace's identity, or a Google SecretStore without a key (only
	// injected pods, as themselves, use it). Its status is Unknown.
	ReasonNotProbed = "NotProbed"
	// ReasonUnreachable: the server did not answer (refused, no route, no
	// such host, timed out).
	ReasonUnreachable = "ServerUnreachable"
	// ReasonTLS: the server's certificate is not trusted by the store's
	// caBundle (or the system roots), or the server does not speak TLS.
	ReasonTLS = "TLSError"
	// ReasonAuthFailed: the login was refused (unknown role, a service
	// account the role does not bind, bad credentials).
	ReasonAuthFailed = "AuthenticationFailed"
	// ReasonDenied: logged in, but the identity may not use what the store
	// names (e.g. nothing under the Vault KV mount is granted).
	ReasonDenied = "PermissionDenied"
	// ReasonInvalid: the store cannot work as written (a missing
	// credentials Secret or service account, a caBundle without a
	// certificate, a KV version that is not the mount's, a role the
	// namespace may not use).
	ReasonInvalid = "InvalidConfiguration"
	// ReasonProbeFailed: any other failure, e.g. the server answered 5xx.
	ReasonProbeFailed = "ProbeFailed"
)

// Stage is the step of a probe that failed.
type Stage int

const (
	// StageConfig is reading the store's configuration and credentials
	// (service-account tokens, Secrets) and checking tenancy rules.
	StageConfig Stage = iota
	// StageLogin is the login to the provider.
	StageLogin
	// StageProbe is the capability check after a successful login.
	StageProbe
)

// maxMessage bounds a condition message; the API server takes 32 KiB, a
// person reads far less.
const maxMessage = 1024

// Explain maps the error of a failed probe stage onto a Ready reason and a
// one-line message naming the cause. Provider errors never hold a secret
// value (fetch's contract), so neither does the message.
func Explain(stage Stage, err error) (reason, message string) {
	var (
		unknownCA  x509.UnknownAuthorityError
		hostname   x509.HostnameError
		invalid    x509.CertificateInvalidError
		verify     *tls.CertificateVerificationError
		recordHdr  tls.RecordHeaderError
		opErr      *net.OpError
		dnsErr     *net.DNSError
		denied     *resolve.DeniedError
		apiStatus  apierrors.APIStatus
		what       string
		timeoutErr interface{ Timeout() bool }
	)
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verify):
		reason, what = ReasonTLS, "the server's certificate is not trusted (check the store's caBundle)"
	case errors.As(err, &recordHdr):
		reason, what = ReasonTLS, "the server does not speak TLS (check the address's scheme)"
	case errors.As(err, &dnsErr), errors.As(err, &opErr) && opErr.Op == "dial",
		errors.Is(err, context.DeadlineExceeded), errors.As(err, &timeoutErr) && timeoutErr.Timeout():
		reason, what = ReasonUnreachable, "cannot reach the server"
	case errors.As(err, &denied), errors.As(err, &apiStatus):
		reason, what = ReasonInvalid, "invalid configuration"
	case stage == StageConfig:
		reason, what = ReasonInvalid, "invalid configuration"
	case stage == StageLogin && (errors.Is(err, fetch.ErrAccessDenied) || errors.Is(err, fetch.ErrInvalid) || errors.Is(err, fetch.ErrNotFound)):
		reason, what = ReasonAuthFailed, "login refused"
	case stage == StageProbe && errors.Is(err, fetch.ErrAccessDenied):
		reason, what = ReasonDenied, "permission denied"
	case stage == StageProbe && errors.Is(err, fetch.ErrInvalid):
		reason, what = ReasonInvalid, "invalid configuration"
	default:
		reason, what = ReasonProbeFailed, "probe failed"
	}
	return reason, oneLine(what + ": " + err.Error())
}

// oneLine joins the lines of s (Vault's multi-error lists span several)
// with single spaces and bounds its length.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxMessage {
		s = s[:maxMessage-3] + "..."
	}
	return s
}
