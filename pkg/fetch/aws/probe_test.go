package aws_test

import (
	"context"
	"strings"
	"testing"

	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/fetch/aws"
	"github.com/keyhook/keyhook/pkg/fetch/aws/awstest"
)

type prober interface {
	Probe(ctx context.Context) error
}

func TestProbe(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	lister := srv.AddUser("lister")
	srv.Allow(lister.ARN, "", "secretsmanager:ListSecrets", "ssm:DescribeParameters")
	reader := srv.AddUser("reader") // may read app/ but not list
	srv.Allow(reader.ARN, "app/", "secretsmanager:GetSecretValue", "ssm:GetParameter")
	srv.PutSecretString("app/db", "db-value")
	srv.PutParameter("/app/db", "SecureString", "param-value")
	forged := reader
	forged.SecretAccessKey = strings.Repeat("x", 40)

	for _, tc := range []struct {
		name    string
		service string
		keys    awstest.Keys
		op      string
		wantErr []string // nil: passes
	}{
		{"Secrets Manager, may list", aws.ServiceSecretsManager, lister, awstest.OpListSecrets, nil},
		{"Secrets Manager, may not list: still valid credentials", aws.ServiceSecretsManager, reader, awstest.OpListSecrets, nil},
		{"Secrets Manager, bad secret key", aws.ServiceSecretsManager, forged, awstest.OpListSecrets, []string{"ListSecrets", "InvalidSignatureException", reader.AccessKeyID}},
		{"Parameter Store, may list", aws.ServiceParameterStore, lister, awstest.OpDescribeParameters, nil},
		{"Parameter Store, may not list", aws.ServiceParameterStore, reader, awstest.OpDescribeParameters, nil},
		{"Parameter Store, unknown key", aws.ServiceParameterStore, awstest.Keys{AccessKeyID: "AKIAUNKNOWN000000000", SecretAccessKey: reader.SecretAccessKey}, awstest.OpDescribeParameters,
			[]string{"DescribeParameters", "UnrecognizedClientException"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.Calls(tc.op)
			p := mustNew(t, config(srv, tc.service, tc.keys))
			err := p.(prober).Probe(context.Background())
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Probe: %v", err)
				}
			} else {
				checkErr(t, err, fetch.ErrAccessDenied, tc.wantErr, []string{forged.SecretAccessKey, reader.SecretAccessKey, "db-value", "param-value"})
			}
			if srv.Calls(tc.op) != before+1 {
				t.Errorf("Probe made %d %s calls, want 1", srv.Calls(tc.op)-before, tc.op)
			}
		})
	}
	for _, c := range srv.CallLog() {
		if c.Op == awstest.OpGetSecretValue || c.Op == awstest.OpGetParameter || c.Op == awstest.OpBatchGetSecretValue {
			t.Errorf("a probe read a value: %s", c.Op)
		}
	}
}
