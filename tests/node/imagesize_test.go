package node

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/keyhook/keyhook/pkg/imagebuild"
)

// The size targets, on the images this run built as make images
// does (bin/images/images.json): the webhook at most 20 MiB compressed (what
// a node pulls), a one-provider agent at most 10 MiB. pkg/imagebuild checks
// the Vault agent on both platforms too.
func TestImageSizes(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(node.Dir, "images", "images.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res imagebuild.Result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	limits := map[string]int64{"webhook": 20 << 20, "init-agent-vault": 10 << 20}
	for _, im := range res.Images {
		limit, ok := limits[im.Name]
		if !ok {
			continue
		}
		delete(limits, im.Name)
		for _, p := range im.Platforms {
			t.Logf("%s %s: %.2f MiB compressed (binary %.2f MiB)", im.Name, p.Platform, float64(p.CompressedSize)/(1<<20), float64(p.BinarySize)/(1<<20))
			if p.CompressedSize <= 0 || p.CompressedSize > limit {
				t.Errorf("%s %s is %.2f MiB compressed; the target is at most %d MiB", im.Name, p.Platform, float64(p.CompressedSize)/(1<<20), limit>>20)
			}
		}
	}
	for name := range limits {
		t.Errorf("this run built no %s image to measure", name)
	}
}
