package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var staticFS embed.FS

// asset is one embedded static file, served under a name that carries a
// hash of its content ("console.3f9a1c0d2b.css"), so that it can be cached
// for a year: a new build with a changed file gets a new URL.
type asset struct {
	name        string // hashed name
	contentType string
	body        []byte
}

// assetSet holds the embedded files by hashed name, and the hashed names
// of the two files the page links.
type assetSet struct {
	byName map[string]*asset
	CSS    string // "static/console.<hash>.css", relative to the page
	JS     string // "static/console.<hash>.js"
}

var defaultAssets = mustLoadAssets(staticFS)

func mustLoadAssets(fsys fs.FS) *assetSet {
	set, err := loadAssets(fsys)
	if err != nil {
		panic(err)
	}
	return set
}

func loadAssets(fsys fs.FS) (*assetSet, error) {
	set := &assetSet{byName: make(map[string]*asset)}
	for _, name := range []string{"console.css", "console.js"} {
		body, err := fs.ReadFile(fsys, "static/"+name)
		if err != nil {
			return nil, fmt.Errorf("reading embedded %s: %w", name, err)
		}
		sum := sha256.Sum256(body)
		ext := path.Ext(name)
		hashed := strings.TrimSuffix(name, ext) + "." + hex.EncodeToString(sum[:5]) + ext
		a := &asset{name: hashed, body: body, contentType: "text/css; charset=utf-8"}
		if ext == ".js" {
			a.contentType = "text/javascript; charset=utf-8"
			set.JS = "static/" + hashed
		} else {
			set.CSS = "static/" + hashed
		}
		set.byName[hashed] = a
	}
	return set, nil
}

// serveAsset serves an embedded file by its hashed name. Assets hold no
// data, so they are served to anyone who reaches the console, which lets
// the 403 page have its style.
func (h *Handler) serveAsset(w http.ResponseWriter, r *http.Request, name string) {
	a, ok := h.assets.byName[name]
	if !ok {
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", a.contentType)
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	w.Header().Set("ETag", `"`+a.name+`"`)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}
