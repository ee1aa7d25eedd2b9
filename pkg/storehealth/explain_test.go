package storehealth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/fetch"
)

// httpErr is an error as net/http returns it for a request to Vault.
func httpErr(err error) error {
	return fmt.Errorf("vault login at auth/kubernetes/login as role \"app\": %w", &url.Error{Op: "Put", URL: "https://vault:8200/v1/auth/kubernetes/login", Err: err})
}

func TestExplain(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	unknownCA := &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}
	for _, tc := range []struct {
		name       string
		stage      Stage
		err        error
		wantReason string
		wantMsg    string
	}{
		{"connection refused", StageLogin, httpErr(refused), ReasonUnreachable,
			`cannot reach the server: vault login at auth/kubernetes/login as role "app": Put "https://vault:8200/v1/auth/kubernetes/login": dial tcp: connect: connection refused`},
		{"no such host", StageLogin, httpErr(&net.DNSError{Err: "no such host", Name: "vault.nowhere", IsNotFound: true}), ReasonUnreachable,
			`cannot reach the server: vault login at auth/kubernetes/login as role "app": Put "https://vault:8200/v1/auth/kubernetes/login": lookup vault.nowhere: no such host`},
		{"timed out", StageProbe, fmt.Errorf("vault token lookup-self: %w", context.DeadlineExceeded), ReasonUnreachable,
			`cannot reach the server: vault token lookup-self: context deadline exceeded`},
		{"untrusted certificate", StageLogin, httpErr(unknownCA), ReasonTLS,
			`the server's certificate is not trusted (check the store's caBundle): vault login at auth/kubernetes/login as role "app": Put "https://vault:8200/v1/auth/kubernetes/login": tls: failed to verify certificate: x509: certificate signed by unknown authority`},
		{"wrong host name", StageLogin, httpErr(x509.HostnameError{Certificate: &x509.Certificate{}, Host: "vault"}), ReasonTLS,
			`the server's certificate is not trusted (check the store's caBundle): vault login at auth/kubernetes/login as role "app": Put "https://vault:8200/v1/auth/kubernetes/login": x509: certificate is not valid for any names, but wanted to match vault`},
		{"plain HTTP server", StageLogin, httpErr(tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), ReasonTLS,
			`the server does not speak TLS (check the address's scheme): vault login at auth/kubernetes/login as role "app": Put "https://vault:8200/v1/auth/kubernetes/login": tls: first record does not look like a TLS handshake`},
		{"unknown role", StageLogin, fmt.Errorf(`vault login at auth/kubernetes/login as role "nope": vault answered 400: invalid role name "nope": %w`, fetch.ErrInvalid), ReasonAuthFailed,
			`login refused: vault login at auth/kubernetes/login as role "nope": vault answered 400: invalid role name "nope": invalid`},
		{"service account not bound", StageLogin, fmt.Errorf("vault login at auth/kubernetes/login as role \"app\": vault answered 403: permission denied: %w", fetch.ErrAccessDenied), ReasonAuthFailed,
			`login refused: vault login at auth/kubernetes/login as role "app": vault answered 403: permission denied: access denied`},
		{"no capability on the mount", StageProbe, fmt.Errorf("KV mount \"secret\": vault answered 403: preflight capability check returned 403, please ensure client's policies grant access to path \"secret/\": %w", fetch.ErrAccessDenied), ReasonDenied,
			`permission denied: KV mount "secret": vault answered 403: preflight capability check returned 403, please ensure client's policies grant access to path "secret/": access denied`},
		{"KV version mismatch", StageProbe, fmt.Errorf("mount \"kv\" is KV v1 but the store says v2 (spec.provider.vault.version): %w", fetch.ErrInvalid), ReasonInvalid,
			`invalid configuration: mount "kv" is KV v1 but the store says v2 (spec.provider.vault.version): invalid`},
		{"service account missing", StageLogin, fmt.Errorf("requesting a token for service account team-a/app: %w", apierrors.NewNotFound(schema.GroupResource{Resource: "serviceaccounts"}, "app")), ReasonInvalid,
			`invalid configuration: requesting a token for service account team-a/app: serviceaccounts "app" not found`},
		{"role not permitted", StageConfig, errors.New(`SecretStore "aws" auth.jwt.roleArn "arn:aws:iam::1:role/x" is not permitted in namespace "a"`), ReasonInvalid,
			`invalid configuration: SecretStore "aws" auth.jwt.roleArn "arn:aws:iam::1:role/x" is not permitted in namespace "a"`},
		{"Vault's multi-line errors become one line", StageProbe, fmt.Errorf("vault answered 500: 1 error occurred:\n\t* internal error\n\n"), ReasonProbeFailed,
			`probe failed: vault answered 500: 1 error occurred: * internal error`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason, msg := Explain(tc.stage, tc.err)
			if reason != tc.wantReason || msg != tc.wantMsg {
				t.Errorf("Explain =\n  %s %q\nwant\n  %s %q", reason, msg, tc.wantReason, tc.wantMsg)
			}
		})
	}
}

func TestExplainBoundsTheMessage(t *testing.T) {
	_, msg := Explain(StageProbe, errors.New(strings.Repeat("x", 5000)))
	if len(msg) != maxMessage || !strings.HasSuffix(msg, "...") {
		t.Errorf("message of %d bytes, want %d ending in ...", len(msg), maxMessage)
	}
}

func TestPerNamespaceLogin(t *testing.T) {
	sel := func(ns string) v1alpha1.SecretKeySelector {
		return v1alpha1.SecretKeySelector{Name: "s", Key: "k", Namespace: ns}
	}
	ptr := func(s v1alpha1.SecretKeySelector) *v1alpha1.SecretKeySelector { return &s }
	for _, tc := range []struct {
		name string
		p    v1alpha1.SecretStoreProvider
		want bool
	}{
		{"vault kubernetes", v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{Auth: v1alpha1.VaultAuth{Kubernetes: &v1alpha1.VaultKubernetesAuth{Role: "r"}}}}, true},
		{"vault token, own namespace", v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{Auth: v1alpha1.VaultAuth{TokenSecretRef: ptr(sel("keyhook-system"))}}}, false},
		{"vault token, user's namespace", v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{Auth: v1alpha1.VaultAuth{TokenSecretRef: ptr(sel(""))}}}, true},
		{"vault approle, own namespace", v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{Auth: v1alpha1.VaultAuth{AppRole: &v1alpha1.VaultAppRoleAuth{RoleID: "r", SecretRef: sel("ops")}}}}, false},
		{"aws jwt", v1alpha1.SecretStoreProvider{AWS: &v1alpha1.AWSProvider{Auth: v1alpha1.AWSAuth{JWT: &v1alpha1.AWSJWTAuth{RoleARN: "arn"}}}}, true},
		{"aws keys, own namespace", v1alpha1.SecretStoreProvider{AWS: &v1alpha1.AWSProvider{Auth: v1alpha1.AWSAuth{SecretRef: &v1alpha1.AWSAuthSecretRef{AccessKeyID: sel("ops"), SecretAccessKey: sel("ops")}}}}, false},
		{"aws keys, one in the user's namespace", v1alpha1.SecretStoreProvider{AWS: &v1alpha1.AWSProvider{Auth: v1alpha1.AWSAuth{SecretRef: &v1alpha1.AWSAuthSecretRef{AccessKeyID: sel("ops"), SecretAccessKey: sel("")}}}}, true},
		{"google, keyhook's own identity", v1alpha1.SecretStoreProvider{GCPSM: &v1alpha1.GCPSMProvider{ProjectID: "p"}}, false},
		{"google key in the user's namespace", v1alpha1.SecretStoreProvider{GCPSM: &v1alpha1.GCPSMProvider{ProjectID: "p", Auth: v1alpha1.GCPSMAuth{SecretRef: &v1alpha1.GCPSMAuthSecretRef{SecretAccessKey: sel("")}}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PerNamespaceLogin(&v1alpha1.SecretStoreSpec{Provider: tc.p}); got != tc.want {
				t.Errorf("PerNamespaceLogin = %v, want %v", got, tc.want)
			}
		})
	}
}
