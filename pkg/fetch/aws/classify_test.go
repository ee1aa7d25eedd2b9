package aws

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/store/aws/awsagent"
)

// sdkError is what an SDK call returns for an answer with this HTTP status
// and, if code is set, this AWS error.
func sdkError(status int, code string) error {
	inner := errors.New("http error")
	if code != "" {
		inner = &smithy.GenericAPIError{Code: code, Message: "msg"}
	}
	return &smithy.OperationError{
		ServiceID: "Secrets Manager", OperationName: "GetSecretValue",
		Err: &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: inner},
			RequestID:     "req",
		},
	}
}

func TestDescribeClasses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		err    error
		want   error // nil: transient
		detail string
	}{
		{"HTTP 429 without a code", sdkError(429, ""), fetch.ErrThrottled, "http error"},
		{"HTTP 429 with a code", sdkError(429, "SomethingNew"), fetch.ErrThrottled, "SomethingNew: msg"},
		{"ThrottlingException", sdkError(400, "ThrottlingException"), fetch.ErrThrottled, "ThrottlingException"},
		{"TooManyRequestsException", sdkError(400, "TooManyRequestsException"), fetch.ErrThrottled, ""},
		{"ThrottledException", sdkError(400, "ThrottledException"), fetch.ErrThrottled, ""},
		{"STS Throttling", sdkError(400, "Throttling"), fetch.ErrThrottled, ""},
		{"ResourceNotFoundException", sdkError(400, "ResourceNotFoundException"), fetch.ErrNotFound, ""},
		{"ParameterNotFound", sdkError(400, "ParameterNotFound"), fetch.ErrNotFound, ""},
		{"ParameterVersionNotFound", sdkError(400, "ParameterVersionNotFound"), fetch.ErrNotFound, ""},
		{"AccessDeniedException", sdkError(400, "AccessDeniedException"), fetch.ErrAccessDenied, ""},
		{"UnrecognizedClientException", sdkError(403, "UnrecognizedClientException"), fetch.ErrAccessDenied, ""},
		{"ExpiredTokenException", sdkError(403, "ExpiredTokenException"), fetch.ErrAccessDenied, ""},
		{"STS ExpiredToken", sdkError(400, "ExpiredToken"), fetch.ErrAccessDenied, ""},
		{"DecryptionFailure (KMS)", sdkError(400, "DecryptionFailure"), fetch.ErrAccessDenied, ""},
		{"HTTP 403 without a code", sdkError(403, ""), fetch.ErrAccessDenied, ""},
		{"InvalidParameterException", sdkError(400, "InvalidParameterException"), fetch.ErrInvalid, ""},
		{"ValidationException", sdkError(400, "ValidationException"), fetch.ErrInvalid, ""},
		{"InternalServiceError", sdkError(500, "InternalServiceError"), nil, "InternalServiceError"},
		{"HTTP 503", sdkError(503, ""), nil, ""},
		{"deadline", fmt.Errorf("op: %w", context.DeadlineExceeded), nil, "deadline exceeded"},
		{
			"undecodable answer", &smithy.DeserializationError{Err: errors.New(`invalid character 's' in "sEcReT"`), Snapshot: []byte("sEcReT")},
			nil, "could not decode",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := describe("prefix", tt.err)
			for _, class := range []error{fetch.ErrThrottled, fetch.ErrNotFound, fetch.ErrAccessDenied, fetch.ErrInvalid} {
				if got := errors.Is(err, class); got != (class == tt.want) {
					t.Errorf("errors.Is(%v, %v) = %v", err, class, got)
				}
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("%v does not wrap the SDK's error", err)
			}
			if !strings.HasPrefix(err.Error(), "prefix: ") || !strings.Contains(err.Error(), tt.detail) {
				t.Errorf("message %q: want prefix and %q", err, tt.detail)
			}
			if strings.Contains(err.Error(), "sEcReT") {
				t.Errorf("message %q quotes the undecodable answer", err)
			}
		})
	}
}

func TestVersionID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		wantID string
		isID   bool
	}{
		{"AWSCURRENT", "", false},
		{"AWSPREVIOUS", "", false},
		{"blue", "", false},
		{"0bd4a6a4-8c7e-4f8e-9a39-2b0d7c1e0000", "0bd4a6a4-8c7e-4f8e-9a39-2b0d7c1e0000", true},
		{"0BD4A6A48C7E4F8E9A392B0D7C1E0000", "0BD4A6A48C7E4F8E9A392B0D7C1E0000", true}, // 32 hex
		{"0bd4a6a48c7e4f8e9a392b0d7c1e000", "", false},                                 // 31
		{strings.Repeat("a", 65), "", false},                                           // too long
		{"0bd4a6a4-8c7e-4f8e-9a39-2b0d7c1e000g", "", false},                            // not hex
		{"uuid/anything", "anything", true},                                            // ESO's explicit form
	}
	for _, tt := range tests {
		id, ok := versionID(tt.in)
		if id != tt.wantID || ok != tt.isID {
			t.Errorf("versionID(%q) = %q, %v; want %q, %v", tt.in, id, ok, tt.wantID, tt.isID)
		}
	}
}

func TestSplitSelector(t *testing.T) {
	t.Parallel()
	const arn = "arn:aws:ssm:eu-west-1:123456789012:parameter/app/db"
	tests := []struct {
		in, name, sel string
		ok            bool
	}{
		{"/app/db", "/app/db", "", false},
		{"/app/db:3", "/app/db", "3", true},
		{"/app/db:stable", "/app/db", "stable", true},
		{"db:3", "db", "3", true},
		{"/app/db:", "/app/db", "", true},
		{arn, arn, "", false},
		{arn + ":2", arn, "2", true},
	}
	for _, tt := range tests {
		name, sel, ok := awsagent.SplitSelector(tt.in)
		if name != tt.name || sel != tt.sel || ok != tt.ok {
			t.Errorf("SplitSelector(%q) = %q, %q, %v; want %q, %q, %v", tt.in, name, sel, ok, tt.name, tt.sel, tt.ok)
		}
	}
}

func TestSessionName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                                   "keyhook",
		"x":                                  "keyhook",
		"keyhook-shop-api":                   "keyhook-shop-api",
		"keyhook-shop/api":                   "keyhook-shop-api",
		"keyhook-" + strings.Repeat("n", 80): "keyhook-" + strings.Repeat("n", 56),
	} {
		if got := sessionName(in); got != want {
			t.Errorf("sessionName(%q) = %q, want %q", in, got, want)
		}
	}
}
