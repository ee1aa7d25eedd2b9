package imagebuild

import (
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// SPDXDocument is the subset of SPDX 2.3 (JSON) that an SBOM of a Go binary
// fills: the binary, the Go toolchain and every module linked into it.
type SPDXDocument struct {
	SPDXVersion       string             `json:"spdxVersion"`
	DataLicense       string             `json:"dataLicense"`
	SPDXID            string             `json:"SPDXID"`
	Name              string             `json:"name"`
	DocumentNamespace string             `json:"documentNamespace"`
	CreationInfo      SPDXCreationInfo   `json:"creationInfo"`
	Packages          []SPDXPackage      `json:"packages"`
	Relationships     []SPDXRelationship `json:"relationships"`
}

// SPDXCreationInfo says when and by what the document was made.
type SPDXCreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

// SPDXPackage is one package: the binary, the toolchain or a Go module.
type SPDXPackage struct {
	Name                  string            `json:"name"`
	SPDXID                string            `json:"SPDXID"`
	VersionInfo           string            `json:"versionInfo,omitempty"`
	DownloadLocation      string            `json:"downloadLocation"`
	FilesAnalyzed         bool              `json:"filesAnalyzed"`
	PrimaryPackagePurpose string            `json:"primaryPackagePurpose,omitempty"`
	Checksums             []SPDXChecksum    `json:"checksums,omitempty"`
	ExternalRefs          []SPDXExternalRef `json:"externalRefs,omitempty"`
	LicenseConcluded      string            `json:"licenseConcluded"`
	LicenseDeclared       string            `json:"licenseDeclared"`
	CopyrightText         string            `json:"copyrightText"`
	Comment               string            `json:"comment,omitempty"`
}

// SPDXChecksum is a package checksum.
type SPDXChecksum struct {
	Algorithm     string `json:"algorithm"`
	ChecksumValue string `json:"checksumValue"`
}

// SPDXExternalRef is a package URL (purl) of a package.
type SPDXExternalRef struct {
	ReferenceCategory string `json:"referenceCategory"`
	ReferenceType     string `json:"referenceType"`
	ReferenceLocator  string `json:"referenceLocator"`
}

// SPDXRelationship links two elements of the document.
type SPDXRelationship struct {
	SPDXElementID      string `json:"spdxElementId"`
	RelationshipType   string `json:"relationshipType"`
	RelatedSPDXElement string `json:"relatedSpdxElement"`
}

var spdxIDUnsafe = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

func spdxID(kind string, n int, name string) string {
	return fmt.Sprintf("SPDXRef-%s-%d-%s", kind, n, strings.Trim(spdxIDUnsafe.ReplaceAllString(name, "-"), "-"))
}

// SPDX describes the binary at path from the build information the Go
// toolchain embedded in it (debug/buildinfo): the modules and versions
// actually linked, the toolchain, the build settings. Nothing is guessed
// from go.mod, so the SBOM of a per-provider agent lists only its provider.
func SPDX(path string, im Image, p v1.Platform, opts Options) (*SPDXDocument, error) {
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("SBOM: build info of %s: %w", path, err)
	}
	sum := sha256Hex(bin)
	plat := p.OS + "/" + p.Architecture
	var settings []string
	for _, s := range bi.Settings {
		settings = append(settings, s.Key+"="+s.Value)
	}
	binID := spdxID("File", 0, im.Binary)
	doc := &SPDXDocument{
		SPDXVersion:       "SPDX-2.3",
		DataLicense:       "CC0-1.0",
		SPDXID:            "SPDXRef-DOCUMENT",
		Name:              im.Name + " " + plat,
		DocumentNamespace: strings.TrimSuffix(opts.Source, "/") + "/spdx/" + im.Name + "/" + p.OS + "-" + p.Architecture + "/sha256-" + sum,
		CreationInfo: SPDXCreationInfo{
			Created:  opts.Epoch.UTC().Format(time.RFC3339),
			Creators: []string{"Tool: keyhook-hack-images", "Organization: keyhook"},
		},
		Packages: []SPDXPackage{{
			Name:                  im.Binary,
			SPDXID:                binID,
			VersionInfo:           opts.Version,
			DownloadLocation:      "NOASSERTION",
			PrimaryPackagePurpose: "APPLICATION",
			Checksums:             []SPDXChecksum{{Algorithm: "SHA256", ChecksumValue: sum}},
			LicenseConcluded:      "NOASSERTION",
			LicenseDeclared:       "NOASSERTION",
			CopyrightText:         "NOASSERTION",
			Comment:               "/usr/local/bin/" + im.Binary + " for " + plat + ", built from " + bi.Path + " with " + strings.Join(settings, " "),
		}},
		Relationships: []SPDXRelationship{{SPDXElementID: "SPDXRef-DOCUMENT", RelationshipType: "DESCRIBES", RelatedSPDXElement: binID}},
	}
	add := func(kind, name, version, purl, comment string) {
		id := spdxID(kind, len(doc.Packages), name)
		pkg := SPDXPackage{
			Name: name, SPDXID: id, VersionInfo: version, DownloadLocation: "NOASSERTION",
			PrimaryPackagePurpose: "LIBRARY",
			LicenseConcluded:      "NOASSERTION", LicenseDeclared: "NOASSERTION", CopyrightText: "NOASSERTION",
			Comment: comment,
		}
		if purl != "" {
			pkg.ExternalRefs = []SPDXExternalRef{{ReferenceCategory: "PACKAGE-MANAGER", ReferenceType: "purl", ReferenceLocator: purl}}
		}
		doc.Packages = append(doc.Packages, pkg)
		doc.Relationships = append(doc.Relationships, SPDXRelationship{SPDXElementID: binID, RelationshipType: "CONTAINS", RelatedSPDXElement: id})
	}
	goVersion := strings.TrimPrefix(bi.GoVersion, "go")
	add("Go", "stdlib", bi.GoVersion, "pkg:golang/stdlib@"+goVersion, "the Go toolchain and standard library")
	add("Module", bi.Main.Path, bi.Main.Version, purl(bi.Main.Path, bi.Main.Version), "the main module")
	for _, d := range bi.Deps {
		m := d
		comment := ""
		if d.Replace != nil {
			m = d.Replace
			comment = "replaces " + d.Path + "@" + d.Version
		}
		if m.Sum != "" {
			if comment != "" {
				comment += "; "
			}
			comment += "go.sum " + m.Sum
		}
		add("Module", m.Path, m.Version, purl(m.Path, m.Version), comment)
	}
	return doc, nil
}

func purl(path, version string) string {
	if version == "" || version == "(devel)" {
		return "pkg:golang/" + path
	}
	return "pkg:golang/" + path + "@" + version
}

// sbomArtifact is an OCI 1.1 artifact manifest carrying doc, with subject
// the platform image it describes: registries that serve the referrers API
// (and go-containerregistry's tag fallback for those that do not) list it
// under the image.
func sbomArtifact(doc *SPDXDocument, subject v1.Descriptor, title string, epoch time.Time) (v1.Image, error) {
	body, err := json.MarshalIndent(doc, "", " ")
	if err != nil {
		return nil, err
	}
	layer := static.NewLayer(body, types.MediaType(SPDXMediaType))
	ld, err := partial.Descriptor(layer)
	if err != nil {
		return nil, err
	}
	ld.Annotations = map[string]string{AnnotationTitle: title}
	config := []byte("{}")
	cd, err := partial.Descriptor(static.NewLayer(config, emptyJSONMediaType))
	if err != nil {
		return nil, err
	}
	cd.Data = config
	subject.Platform = nil // a subject descriptor points at the manifest, nothing more
	subject.Annotations = nil
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  SPDXMediaType,
		Config:        *cd,
		Layers:        []v1.Descriptor{*ld},
		Subject:       &subject,
		Annotations:   map[string]string{AnnotationCreated: epoch.UTC().Format(time.RFC3339)},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return partial.CompressedToImage(&artifact{manifest: raw, config: config, layer: layer, layerDigest: ld.Digest})
}

// artifact is a v1.Image whose config is the OCI empty JSON ("{}"), not an
// image configuration; go-containerregistry's mutate package would write one.
type artifact struct {
	manifest    []byte
	config      []byte
	layer       v1.Layer
	layerDigest v1.Hash
}

func (a *artifact) RawConfigFile() ([]byte, error)      { return a.config, nil }
func (a *artifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (a *artifact) RawManifest() ([]byte, error)        { return a.manifest, nil }
func (a *artifact) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if h == a.layerDigest {
		return a.layer, nil
	}
	return nil, fmt.Errorf("artifact has no blob %s", h)
}
