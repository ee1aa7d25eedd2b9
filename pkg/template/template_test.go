package template

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
)

func TestRender(t *testing.T) {
	const cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	const key = "-----BEGIN PRIVATE KEY-----\nMIIC\n-----END PRIVATE KEY-----\n"
	data := map[string][]byte{"user": []byte("app"), "password": []byte("s3cr3t-value"), "json": []byte(`{"host":"db","port":5432}`), "bundle": []byte(cert + key)}
	for _, tc := range []struct {
		name      string
		tmpl      *v1alpha1.ExternalSecretTemplate
		want      map[string][]byte
		wantError string
	}{
		{"no template", nil, data, ""},
		{"replace", &v1alpha1.ExternalSecretTemplate{Data: map[string]string{
			"dsn":  "postgres://{{ .user }}:{{ .password }}@{{ (fromJson .json).host }}:{{ (fromJson .json).port }}",
			"b64":  "{{ .user | b64enc }}",
			"cert": `{{ pemBlocks "CERTIFICATE" .bundle }}`,
		}}, map[string][]byte{
			"dsn":  []byte("postgres://app:s3cr3t-value@db:5432"),
			"b64":  []byte("YXBw"),
			"cert": []byte(cert),
		}, ""},
		{"merge", &v1alpha1.ExternalSecretTemplate{MergePolicy: v1alpha1.TemplateMergeMerge, Data: map[string]string{"user": "{{ .user | upper }}"}},
			map[string][]byte{"user": []byte("APP"), "password": []byte("s3cr3t-value"), "json": data["json"], "bundle": data["bundle"]}, ""},
		{"missing key", &v1alpha1.ExternalSecretTemplate{Data: map[string]string{"x": "{{ .nope }}"}}, nil, `template.data["x"]`},
		{"bad base64 does not quote the value", &v1alpha1.ExternalSecretTemplate{Data: map[string]string{"x": "{{ .password | b64dec }}"}}, nil, "b64dec: input is not base64"},
		{"a value in a template error is withheld", &v1alpha1.ExternalSecretTemplate{Data: map[string]string{"x": `{{ index .password 99 }}`}}, nil, `template.data["x"]`},
		{"parse error", &v1alpha1.ExternalSecretTemplate{Data: map[string]string{"x": "{{ .user "}}, nil, `template.data["x"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Render(tc.tmpl, data)
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.wantError)
				}
				for _, v := range data {
					if strings.Contains(err.Error(), string(v)) {
						t.Errorf("error %q quotes a secret value", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("rendered data (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParse(t *testing.T) {
	if err := Parse("dsn", `{{ .user | upper | b64enc }}`); err != nil {
		t.Errorf("a template with Render's functions does not parse: %v", err)
	}
	if err := Parse("dsn", `{{ .user | nosuchfunc }}`); err == nil || !strings.Contains(err.Error(), "nosuchfunc") {
		t.Errorf("an unknown function: error %v, want one naming it", err)
	}
}
