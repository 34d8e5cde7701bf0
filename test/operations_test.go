package test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/docana/keygate/internal/keystore/postgres/pgtest"
)

// The tests of docs/OPERATIONS.md: what an operator runs in production,
// run here on the real binary so that the guide states facts.

// restoredCaddyfile is a gateway whose sqlite store is the file
// .Extra.Store, as an operator restoring a backup configures it.
const restoredCaddyfile = `{
	admin {{.Admin}}
	persist_config off
	apikeys {
		store sqlite {{.Extra.Store}}
	}
}

http://127.0.0.1:{{.Site}} {
	apikey
	reverse_proxy {{.Upstream}}
}
`

// TestBackupUnderLoadRestoresIntoAFreshGateway backs up a gateway's
// store with the CLI while clients call it and keys are created and
// revoked, then runs a new gateway on the copy: the keys of before the
// backup work there as they did, a revoked one stays revoked, and a key
// made after the backup is unknown.
func TestBackupUnderLoadRestoresIntoAFreshGateway(t *testing.T) {
	t.Parallel()
	up := NewUpstream(t)
	g := StartGateway(t, Options{Upstream: up})
	kept, keptKey := g.CreateKey("kept", "full", "1y")
	revoked, revokedKey := g.CreateKey("revoked", "full", "1y")
	if resp, body := g.Admin(http.MethodDelete, "/apikeys/"+revokedKey.ID, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoking: %d %s", resp.StatusCode, body)
	}

	// The load: a client calling with the kept key, and an operator
	// creating and revoking keys, until the backups are taken.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var calls, changes atomic.Int64
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest(http.MethodGet, g.SiteURL+"/api/data", nil)
			req.Header = WithKey(kept)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("request under load: %v", err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("request under load: status %d", resp.StatusCode)
				return
			}
			calls.Add(1)
		}
	})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			body := fmt.Sprintf(`{"name":"load %d","scope":"routine","expires_in":"1d"}`, i)
			resp, err := http.Post(g.AdminURL+"/apikeys", "application/json", strings.NewReader(body))
			if err != nil {
				t.Errorf("creating under load: %v", err)
				return
			}
			var created struct {
				APIKey APIKey `json:"api_key"`
			}
			err = json.NewDecoder(resp.Body).Decode(&created)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated || err != nil {
				t.Errorf("creating under load: status %d, %v", resp.StatusCode, err)
				return
			}
			req, _ := http.NewRequest(http.MethodDelete, g.AdminURL+"/apikeys/"+created.APIKey.ID, nil)
			resp, err = http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("revoking under load: %v", err)
				return
			}
			resp.Body.Close()
			changes.Add(2)
		}
	})
	for calls.Load() < 20 || changes.Load() < 4 {
		if t.Failed() {
			close(stop)
			wg.Wait()
			t.FailNow()
		}
		time.Sleep(10 * time.Millisecond)
	}

	backup := filepath.Join(t.TempDir(), "keys-backup.db")
	stdout, stderr, code := g.Run("apikey", "backup", backup, "--address", g.Ports.Admin)
	if code != 0 {
		t.Fatalf("apikey backup: exit %d: %s%s", code, stdout, stderr)
	}
	t.Logf("apikey backup: %s", stdout)
	if !strings.HasPrefix(stdout, "Wrote a backup of the key store to "+backup+" (") {
		t.Errorf("apikey backup printed %q", stdout)
	}
	// A second backup to the same file is refused, and the file kept.
	before, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	_, stderr, code = g.Run("apikey", "backup", backup, "--address", g.Ports.Admin)
	if code == 0 || !strings.Contains(stderr, backup+" exists: use --force to replace it") {
		t.Errorf("apikey backup over an existing file: exit %d, stderr %q", code, stderr)
	}
	if after, _ := os.ReadFile(backup); !bytes.Equal(before, after) {
		t.Error("the refused backup changed the file")
	}
	// With --force it is replaced, under the same load.
	if stdout, stderr, code := g.Run("apikey", "backup", backup, "--force", "--address", g.Ports.Admin); code != 0 {
		t.Fatalf("apikey backup --force: exit %d: %s%s", code, stdout, stderr)
	}
	close(stop)
	wg.Wait()
	t.Logf("load during the backups: %d requests, %d key changes", calls.Load(), changes.Load())
	late, _ := g.CreateKey("made after the backup", "full", "1y")

	info, err := os.Stat(backup)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("backup file mode %v, want 0600", info.Mode().Perm())
	}
	data, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{kept, revoked, late} {
		if bytes.Contains(data, []byte(s)) {
			t.Fatal("the backup holds a secret")
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(backup))
	if len(entries) != 1 {
		t.Errorf("the backup's directory holds %d entries, want the backup alone", len(entries))
	}

	fresh := StartGateway(t, Options{Caddyfile: restoredCaddyfile, Upstream: up, Extra: map[string]any{"Store": backup}})
	if resp, body := fresh.Request(http.MethodGet, "/api/data", WithKey(kept)); resp.StatusCode != http.StatusOK {
		t.Errorf("kept key on the restored gateway: %d %s", resp.StatusCode, body)
	}
	resp, body := fresh.Request(http.MethodGet, "/api/data", WithKey(revoked))
	if code, _ := decodeFailure(t, body); resp.StatusCode != http.StatusUnauthorized || code != "api_key_revoked" {
		t.Errorf("revoked key on the restored gateway: %d %s", resp.StatusCode, body)
	}
	resp, body = fresh.Request(http.MethodGet, "/api/data", WithKey(late))
	if code, _ := decodeFailure(t, body); resp.StatusCode != http.StatusUnauthorized || code != "invalid_api_key" {
		t.Errorf("key made after the backup, on the restored gateway: %d %s", resp.StatusCode, body)
	}
	if k := fresh.GetKey(keptKey.ID); k.Name != "kept" || k.Status != "active" {
		t.Errorf("kept key on the restored gateway: %+v", k)
	}
}

// TestBackupRouteAnswers checks GET /apikeys/backup itself: its headers,
// and its answers to another method and to a query.
func TestBackupRouteAnswers(t *testing.T) {
	t.Parallel()
	g := StartGateway(t, Options{})
	g.CreateKey("a key", "full", "1y")
	resp, body := g.Admin(http.MethodGet, "/apikeys/backup", nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/vnd.sqlite3" ||
		resp.Header.Get("Content-Length") != strconv.Itoa(len(body)) || resp.Header.Get("Cache-Control") != "no-store" ||
		!bytes.HasPrefix(body, []byte("SQLite format 3\x00")) {
		t.Errorf("GET /apikeys/backup: %d %v, %d bytes", resp.StatusCode, resp.Header, len(body))
	}
	resp, body = g.Admin(http.MethodPost, "/apikeys/backup", nil)
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET" {
		t.Errorf("POST /apikeys/backup: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	resp, body = g.Admin(http.MethodGet, "/apikeys/backup?x=1", nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("GET /apikeys/backup?x=1: %d %s", resp.StatusCode, body)
	}
}

// postgresCaddyfile is a gateway on the PostgreSQL store of $KEYGATE_DSN.
const postgresCaddyfile = `{
	admin {{.Admin}}
	persist_config off
	apikeys {
		store postgres {env.KEYGATE_DSN}
	}
}

http://127.0.0.1:{{.Site}} {
	apikey
	reverse_proxy {{.Upstream}}
}
`

// TestBackupOfPostgresStoreSaysUsePgDump: a gateway on PostgreSQL answers
// 501 with what to use instead, and the CLI prints it and writes nothing.
func TestBackupOfPostgresStoreSaysUsePgDump(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	g := StartGateway(t, Options{Caddyfile: postgresCaddyfile, Env: []string{"KEYGATE_DSN=" + dsn}})
	resp, body := g.Admin(http.MethodGet, "/apikeys/backup", nil)
	if resp.StatusCode != http.StatusNotImplemented || !strings.Contains(string(body), "pg_dump") {
		t.Errorf("GET /apikeys/backup on postgres: %d %s", resp.StatusCode, body)
	}
	file := filepath.Join(t.TempDir(), "keys.db")
	_, stderr, code := g.Run("apikey", "backup", file, "--address", g.Ports.Admin)
	t.Logf("apikey backup on postgres: exit %d: %s", code, stderr)
	if code == 0 || !strings.Contains(stderr, "back up its database with pg_dump") {
		t.Errorf("apikey backup on postgres: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(file); err == nil {
		t.Error("apikey backup on postgres wrote a file")
	}
}

// unixAdminCaddyfile puts the admin endpoint on a unix socket of mode
// 0660, as docs/OPERATIONS.md recommends.
const unixAdminCaddyfile = `{
	admin unix/{{.Extra.Socket}}|0660
	persist_config off
}

http://127.0.0.1:{{.Site}} {
	apikey
	reverse_proxy {{.Upstream}}
}
`

// TestAdminOnUnixSocket runs keygate with its admin endpoint on a unix
// socket: the socket has the configured mode, the CLI (apikey, reload)
// works through it, and the process listens on no TCP port but its site.
func TestAdminOnUnixSocket(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// systemd's RuntimeDirectory makes this directory in production.
	sock := filepath.Join(dir, "run", "admin.sock")
	if err := os.MkdirAll(filepath.Dir(sock), 0o750); err != nil {
		t.Fatal(err)
	}
	up := NewUpstream(t)
	p := startUnixGateway(t, dir, unixAdminCaddyfile, Ports{Site: freePort(t), Upstream: up.Addr(), Dir: dir, Extra: map[string]any{"Socket": sock}}, sock)

	info, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Type() != os.ModeSocket || info.Mode().Perm() != 0o660 {
		t.Errorf("admin socket mode %v, want a socket of mode 0660", info.Mode())
	}
	address := "unix/" + sock
	stdout, stderr, code := p.run("apikey", "create", "--name", "through the socket", "--scope", "full", "--expires", "1d", "--json", "--address", address)
	if code != 0 {
		t.Fatalf("apikey create through the socket: exit %d: %s%s", code, stdout, stderr)
	}
	var created struct {
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal([]byte(stdout), &created); err != nil || created.Secret == "" {
		t.Fatalf("apikey create: %v: %s", err, stdout)
	}
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/x", p.ports.Site), nil)
	req.Header = WithKey(created.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the key made through the socket: status %d", resp.StatusCode)
	}
	stdout, stderr, code = p.run("apikey", "list", "--address", address)
	if code != 0 || !strings.Contains(stdout, "through the socket") {
		t.Errorf("apikey list through the socket: exit %d: %s%s", code, stdout, stderr)
	}
	// Or with the address read from the Caddyfile.
	stdout, stderr, code = p.run("apikey", "list", "--config", p.config)
	if code != 0 || !strings.Contains(stdout, "through the socket") {
		t.Errorf("apikey list --config: exit %d: %s%s", code, stdout, stderr)
	}
	// The unit's ExecReload: reload finds the socket in the Caddyfile.
	stdout, stderr, code = p.run("reload", "--config", p.config, "--force")
	if code != 0 {
		t.Errorf("reload through the socket: exit %d: %s%s", code, stdout, stderr)
	}
	if info, err := os.Stat(sock); err != nil || info.Mode().Perm() != 0o660 {
		t.Errorf("admin socket after reload: %v, %v", info, err)
	}

	ports := listeningTCPPorts(t, p.cmd.Process.Pid)
	if len(ports) != 1 || ports[0] != p.ports.Site {
		t.Errorf("keygate listens on TCP ports %v, want only the site's %d", ports, p.ports.Site)
	}
}

// unixGateway is a keygate process whose admin endpoint is a unix socket,
// which the harness's StartGateway (polling a TCP admin) cannot wait for.
type unixGateway struct {
	cmd    *exec.Cmd
	env    []string
	dir    string
	config string
	ports  Ports
	out    *syncBuffer
}

// startUnixGateway starts keygate in dir with the Caddyfile template text
// and waits until sock exists and the site port answers.
func startUnixGateway(t *testing.T, dir, text string, ports Ports, sock string) *unixGateway {
	t.Helper()
	g := &Gateway{t: t, Ports: ports}
	return startProcess(t, dir, "Caddyfile", g.Render(text), ports, func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})
}

// startProcess starts keygate in dir with config (written to dir/name;
// a name ending in .json is a JSON config) and waits until ready reports
// true and the site port answers.
func startProcess(t *testing.T, dir, name, config string, ports Ports, ready func() bool) *unixGateway {
	t.Helper()
	p := &unixGateway{dir: dir, config: filepath.Join(dir, name), ports: ports, out: new(syncBuffer)}
	if err := os.WriteFile(p.config, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	p.env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	p.cmd = exec.Command(keygateBin, "run", "--config", p.config)
	p.cmd.Dir, p.cmd.Env = dir, p.env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(waitLimit):
			_ = p.cmd.Process.Kill()
			<-done
			t.Errorf("keygate did not exit within %v of SIGINT", waitLimit)
		}
		if t.Failed() {
			t.Logf("keygate output:\n%s", p.out.String())
		}
	})
	deadline := time.Now().Add(waitLimit)
	for {
		select {
		case <-done:
			t.Fatalf("keygate exited before it was ready:\n%s", p.out.String())
		default:
		}
		if ready() {
			if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", ports.Site), time.Second); err == nil {
				c.Close()
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("keygate not ready after %v:\n%s", waitLimit, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// run runs the keygate CLI in the gateway's directory and environment.
func (p *unixGateway) run(args ...string) (stdout, stderr string, code int) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, keygateBin, args...)
	cmd.Dir, cmd.Env = p.dir, p.env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else if err != nil {
		code = -1
		errOut.WriteString(err.Error())
	}
	return out.String(), errOut.String(), code
}

// listeningTCPPorts returns the TCP ports process pid listens on, read
// from /proc: the inodes of its socket descriptors, matched with the
// LISTEN (state 0A) entries of /proc/net/tcp and tcp6.
func listeningTCPPorts(t *testing.T, pid int) []int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("reading the process's descriptors: %v", err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if inode, ok := strings.CutPrefix(target, "socket:["); ok {
			if err == nil {
				inodes[strings.TrimSuffix(inode, "]")] = true
			}
		}
	}
	var ports []int
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // the header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] {
				continue
			}
			_, hexPort, _ := strings.Cut(fields[1], ":")
			port, err := strconv.ParseInt(hexPort, 16, 32)
			if err == nil {
				ports = append(ports, int(port))
			}
		}
		f.Close()
	}
	return ports
}

// TestSystemdUnit checks docs/systemd/keygate.service: systemd-analyze
// verify accepts it (with the binary under test in place of
// /usr/bin/keygate) without a warning, and its ExecStart and ExecReload
// name subcommands and flags the binary has.
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	unit, err := os.ReadFile(filepath.Join("..", "docs", "systemd", "keygate.service"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(unit), "/usr/bin/keygate", keygateBin)

	var execs int
	for line := range strings.Lines(text) {
		key, value, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || (key != "ExecStart" && key != "ExecReload") {
			continue
		}
		execs++
		args := strings.Fields(value)
		if len(args) < 2 || args[0] != keygateBin {
			t.Errorf("%s runs %q, not keygate", key, value)
			continue
		}
		help, err := exec.Command(keygateBin, args[1], "--help").CombinedOutput()
		if err != nil {
			t.Errorf("%s: keygate %s --help: %v: %s", key, args[1], err, help)
			continue
		}
		for _, a := range args[2:] {
			if strings.HasPrefix(a, "--") && !strings.Contains(string(help), a+" ") {
				t.Errorf("%s: keygate %s has no flag %s", key, args[1], a)
			}
		}
	}
	if execs != 2 {
		t.Errorf("found %d ExecStart/ExecReload lines, want 2", execs)
	}
	for _, want := range []string{"User=keygate", "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE", "LimitNOFILE=1048576", "RuntimeDirectory=keygate"} {
		if !strings.Contains(text, "\n"+want+"\n") {
			t.Errorf("the unit lacks the line %s", want)
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		msg := "systemd-analyze not found (Debian package systemd): the unit was not verified"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	path := filepath.Join(t.TempDir(), "keygate.service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify: %v:\n%s", err, out)
	}
}

// validateCaddyfile is a config with the default sqlite store.
const validateCaddyfile = `{
	admin off
	apikeys {
		store sqlite
	}
}

http://127.0.0.1:8080 {
	apikey
	respond "ok"
}
`

// TestValidateCreatesTheSQLiteStore shows, for docs/OPERATIONS.md, that
// keygate validate opens (so creates, or migrates) the sqlite store: in
// $XDG_DATA_HOME/caddy/keygate/keys.db, else in
// $HOME/.local/share/caddy/keygate/keys.db, as the service would.
func TestValidateCreatesTheSQLiteStore(t *testing.T) {
	t.Parallel()
	config := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(config, []byte(validateCaddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	var base []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_DATA_HOME=") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			base = append(base, kv)
		}
	}
	home, xdg := t.TempDir(), t.TempDir()
	for _, c := range []struct {
		name string
		env  []string
		want string
	}{
		{"HOME only", []string{"HOME=" + home}, filepath.Join(home, ".local", "share", "caddy", "keygate", "keys.db")},
		{"XDG_DATA_HOME", []string{"HOME=" + home, "XDG_DATA_HOME=" + xdg}, filepath.Join(xdg, "caddy", "keygate", "keys.db")},
	} {
		if _, err := os.Stat(c.want); err == nil {
			t.Fatalf("%s: %s exists before validate", c.name, c.want)
		}
		cmd := exec.Command(keygateBin, "validate", "--config", config)
		cmd.Dir = home
		cmd.Env = append(append([]string(nil), base...), c.env...)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Valid configuration") {
			t.Fatalf("%s: keygate validate: %v:\n%s", c.name, err, out)
		}
		info, err := os.Stat(c.want)
		if err != nil {
			t.Errorf("%s: after validate: %v", c.name, err)
			continue
		}
		t.Logf("%s: validate created %s (mode %v, %d bytes)", c.name, c.want, info.Mode(), info.Size())
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %s has mode %v, want 0600", c.name, c.want, info.Mode().Perm())
		}
	}
}

// TestNewerSchemaIsRefused is the downgrade guard of docs/OPERATIONS.md:
// an older keygate (here: a store file marked one schema version ahead of
// this binary) refuses the file with a message, and leaves it as it was.
func TestNewerSchemaIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store := filepath.Join(dir, "keys.db")
	config := filepath.Join(dir, "Caddyfile")
	text := strings.Replace(validateCaddyfile, "store sqlite\n", "store sqlite "+store+"\n", 1)
	if err := os.WriteFile(config, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	validate := func() (string, error) {
		cmd := exec.Command(keygateBin, "validate", "--config", config)
		cmd.Dir, cmd.Env = dir, append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := validate(); err != nil {
		t.Fatalf("validate on a new file: %v\n%s", err, out)
	}
	db, err := sql.Open("sqlite", store)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var version int
	if err := db.QueryRow("PRAGMA user_version").Scan(&version); err != nil || version < 1 {
		t.Fatalf("user_version %d, %v", version, err)
	}
	newer := version + 1
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", newer)); err != nil {
		t.Fatal(err)
	}
	out, err := validate()
	if err == nil {
		t.Fatalf("validate on a file of a newer schema succeeded:\n%s", out)
	}
	want := fmt.Sprintf("the file has schema version %d, newer than this keygate knows (%d): it was written by a newer keygate; upgrade keygate or use another file", newer, version)
	if !strings.Contains(out, want) {
		t.Errorf("validate's output lacks %q:\n%s", want, out)
	}
	t.Logf("%s", out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
	if err := db.QueryRow("PRAGMA user_version").Scan(&version); err != nil || version != newer {
		t.Errorf("user_version after the refusal: %d, %v; want %d", version, err, newer)
	}
}
