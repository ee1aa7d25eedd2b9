// Command testapp is the application container of the node tests. For each
// directory it is given it reports, one JSON line per fact on stdout: every
// file's SHA-256 (never its value), mode, owner and the filesystem it lives
// on, and whether it can write into the directory. It reports the SHA-256 of
// the environment variables named in $HASH_ENV the same way, then sleeps
// until SIGTERM, so that the tests read its report with kubectl logs. It is
// built into an image by the node tests and by make images.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	// TLS roots for an image without a CA file (make images requires them in
	// every binary it packs).
	_ "golang.org/x/crypto/x509roots/fallback"
)

// Line is one fact of the report.
type Line struct {
	Kind   string `json:"kind"` // file, write, env, self, done
	Path   string `json:"path,omitempty"`
	Name   string `json:"name,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	Mode   string `json:"mode,omitempty"`
	UID    int    `json:"uid"`
	GID    int    `json:"gid"`
	FS     string `json:"fs,omitempty"`
	Error  string `json:"error,omitempty"`
}

func emit(l Line) {
	b, _ := json.Marshal(l)
	fmt.Println(string(b))
}

func main() {
	emit(Line{Kind: "self", UID: os.Getuid(), GID: os.Getgid()})
	for _, dir := range os.Args[1:] {
		walk(dir, 0)
		probe := filepath.Join(dir, ".testapp-write-probe")
		err := os.WriteFile(probe, []byte("x"), 0o600)
		l := Line{Kind: "write", Path: dir}
		if err != nil {
			l.Error = err.Error()
		} else {
			_ = os.Remove(probe)
		}
		emit(l)
	}
	for _, name := range strings.Split(os.Getenv("HASH_ENV"), ",") {
		if name == "" {
			continue
		}
		v, ok := os.LookupEnv(name)
		l := Line{Kind: "env", Name: name}
		if ok {
			l.SHA256 = hash([]byte(v))
		} else {
			l.Error = "not set"
		}
		emit(l)
	}
	emit(Line{Kind: "done"})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
}

// walk reports the files below dir, following symbolic links (a Secret
// volume's keys are links into ..data) but skipping the ..-prefixed entries.
func walk(dir string, depth int) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		emit(Line{Kind: "file", Path: dir, Error: err.Error()})
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			emit(Line{Kind: "file", Path: p, Error: err.Error()})
			continue
		}
		if st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			if depth < 3 {
				walk(p, depth+1)
			}
			continue
		}
		l := Line{Kind: "file", Path: p, Mode: fmt.Sprintf("%04o", st.Mode&0o7777), UID: int(st.Uid), GID: int(st.Gid), FS: fsType(p)}
		if b, err := os.ReadFile(p); err != nil {
			l.Error = err.Error()
		} else {
			l.SHA256 = hash(b)
		}
		emit(l)
	}
}

func hash(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fsType names the filesystem a path is on, as statfs reports it.
func fsType(p string) string {
	var s syscall.Statfs_t
	if err := syscall.Statfs(p, &s); err != nil {
		return "error: " + err.Error()
	}
	switch s.Type {
	case 0x01021994:
		return "tmpfs"
	case 0xEF53:
		return "ext4"
	case 0x794c7630:
		return "overlayfs"
	}
	return fmt.Sprintf("0x%x", s.Type)
}
