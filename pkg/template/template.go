// Package template renders an ExternalSecret's target.template into the
// Secret's data. It is its own package so that the webhook, which checks
// that templates parse, links none of the sync's provider SDKs.
package template

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	texttemplate "text/template"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
)

// templateFuncs are the functions templates may call. Their errors never
// quote their input: it is a secret value.
var templateFuncs = texttemplate.FuncMap{
	"b64enc": func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
	"b64dec": func(s string) (string, error) {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return "", errors.New("b64dec: input is not base64")
		}
		return string(b), nil
	},
	"toJson": func(v any) (string, error) {
		b, err := json.Marshal(v)
		if err != nil {
			return "", errors.New("toJson: value cannot be encoded")
		}
		return string(b), nil
	},
	"fromJson": func(s string) (any, error) {
		var v any
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			return nil, errors.New("fromJson: input is not JSON")
		}
		return v, nil
	},
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
	"trim":  strings.TrimSpace,
	// pemBlocks keeps the PEM blocks of one type from a bundle, e.g. the
	// certificates of a chain without its key.
	"pemBlocks": func(typ, bundle string) (string, error) {
		var out bytes.Buffer
		rest := []byte(bundle)
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type == typ {
				if err := pem.Encode(&out, b); err != nil {
					return "", errors.New("pemBlocks: cannot encode")
				}
			}
		}
		if out.Len() == 0 {
			return "", fmt.Errorf("pemBlocks: no %q block", typ)
		}
		return out.String(), nil
	},
}

// Render applies an ExternalSecret's template to fetched data and returns the
// Secret's data. Without template data, the fetched data is returned as is.
func Render(tmpl *v1alpha1.ExternalSecretTemplate, data map[string][]byte) (map[string][]byte, error) {
	if tmpl == nil || len(tmpl.Data) == 0 {
		return data, nil
	}
	values := make(map[string]string, len(data))
	for k, v := range data {
		values[k] = string(v)
	}
	out := map[string][]byte{}
	if tmpl.MergePolicy == v1alpha1.TemplateMergeMerge {
		out = maps.Clone(data)
	}
	for _, key := range slices.Sorted(maps.Keys(tmpl.Data)) {
		t, err := texttemplate.New(key).Option("missingkey=error").Funcs(templateFuncs).Parse(tmpl.Data[key])
		if err != nil {
			return nil, fmt.Errorf("template.data[%q]: %w", key, err)
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, values); err != nil {
			return nil, fmt.Errorf("template.data[%q]: %s", key, withheld(err, values))
		}
		out[key] = buf.Bytes()
	}
	return out, nil
}

// withheld returns err's message unless it quotes a value; text/template's
// own errors can print the data they failed on.
func withheld(err error, values map[string]string) string {
	msg := err.Error()
	for _, v := range values {
		if len(v) >= 3 && strings.Contains(msg, v) {
			return "rendering failed (the message is withheld because it quotes a secret value)"
		}
	}
	return msg
}

// Parse checks that one template of target.template.data parses with
// the functions Render offers, without running it.
func Parse(name, text string) error {
	_, err := texttemplate.New(name).Funcs(templateFuncs).Parse(text)
	return err
}
