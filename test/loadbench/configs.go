package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"text/template"
	"time"
)

// caddyfile is the template of every Caddy process the benchmark runs: the
// same server and the same reverse_proxy transport for all, differing only
// in what stands in front of reverse_proxy. No access log in any of them.
const caddyfile = `{
	admin 127.0.0.1:{{.Admin}}
	persist_config off
	auto_https off
{{- if .Store}}
	apikeys {
		{{.Store}}
		cache_size {{.CacheSize}}
{{- range .RateLimit}}
		{{.}}
{{- end}}
	}
{{- end}}
}

http://:{{.Port}} {
	bind 127.0.0.1
{{- if eq .Kind "keygate"}}
	apikey
	{{template "proxy" .}}
{{- else if eq .Kind "header"}}
	@key header Authorization "ApiKey {{.Secret}}"
	handle @key {
		{{template "proxy" .}}
	}
	handle {
		respond 401
	}
{{- else if eq .Kind "forward_auth"}}
	forward_auth {{.Auth}} {
		uri /verify
		copy_headers X-Api-Key-Id X-Api-Key-Name X-Api-Key-Scope
		transport http {
			keepalive_idle_conns_per_host 128
		}
	}
	{{template "proxy" .}}
{{- else if eq .Kind "respond"}}
	respond "ok" 200
{{- else}}
	{{template "proxy" .}}
{{- end}}
}
{{define "proxy"}}reverse_proxy {{.Upstream}} {
		transport http {
			keepalive_idle_conns_per_host 128
		}
	}{{end}}
`

var caddyfileTmpl = template.Must(template.New("Caddyfile").Parse(caddyfile))

// caddyConfig is what one Caddy process runs.
type caddyConfig struct {
	Kind      string   // bare, keygate, header, forward_auth, respond
	Upstream  string   // host:port
	Store     string   // the apikeys store line, for keygate
	CacheSize int      // for keygate
	Secret    string   // the one key the header matcher accepts
	Auth      string   // host:port of the auth service, for forward_auth
	RateLimit []string // more apikeys lines, for keygate: rate_limit ...
	Admin     int      // set by startCaddy
	Port      int      // set by startCaddy

	bin string // the keygate binary to run; default bench.keygate
}

// instance is a running Caddy process.
type instance struct {
	proc  *proc
	url   string // the site: "http://127.0.0.1:<port>/"
	admin string // the admin endpoint: "http://127.0.0.1:<port>"
}

// startCaddy runs keygate with cfg as its Caddyfile, in a home directory of
// its own, and waits until its site answers.
func (b *bench) startCaddy(ctx context.Context, name string, cfg caddyConfig) (*instance, error) {
	var err error
	if cfg.Port, err = freePort(); err != nil {
		return nil, err
	}
	if cfg.Admin, err = freePort(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := caddyfileTmpl.Execute(&buf, cfg); err != nil {
		return nil, err
	}
	home := filepath.Join(b.work, "home-"+name)
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(b.work, name+".Caddyfile")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		return nil, err
	}
	bin := cfg.bin
	if bin == "" {
		bin = b.keygate
	}
	p, err := startProc(name, b.work, bin, []string{"run", "--config", path, "--adapter", "caddyfile"},
		[]string{"HOME=" + home, "XDG_DATA_HOME=" + filepath.Join(home, "data"), "XDG_CONFIG_HOME=" + filepath.Join(home, "config")})
	if err != nil {
		return nil, err
	}
	inst := &instance{
		proc:  p,
		url:   "http://127.0.0.1:" + strconv.Itoa(cfg.Port) + "/",
		admin: "http://127.0.0.1:" + strconv.Itoa(cfg.Admin),
	}
	if err := waitHTTP(ctx, p, inst.url, 60*time.Second); err != nil {
		p.Stop(5 * time.Second)
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	return inst, nil
}

// startHelper runs one of the benchmark's own servers (upstream, authsvc)
// on a free port and waits until it answers.
func (b *bench) startHelper(ctx context.Context, name, bin string, args ...string) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p, err := startProc(name, b.work, bin, append([]string{"-listen", addr}, args...), nil)
	if err != nil {
		return nil, "", err
	}
	if err := waitHTTP(ctx, p, "http://"+addr+"/", 60*time.Second); err != nil {
		p.Stop(5 * time.Second)
		return nil, "", err
	}
	return p, addr, nil
}
