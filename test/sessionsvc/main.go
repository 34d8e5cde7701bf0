// Command sessionsvc stands in for a SaaS application's login, so that the
// owner-scoped API Keys console can be shown and tested the way a SaaS
// deploys it: Caddy's forward_auth asks it about every console request,
// and it answers with the signed-in user's organisation, ID and role in
// the X-Org-Id, X-User-Id and X-Role headers, which forward_auth copies
// into the request (removing any copy the client sent).
//
// It is a test fixture, not a login: anyone may sign in as any configured
// user, without a password.
//
//	sessionsvc -listen 127.0.0.1:9100 \
//	    -user alice:acme:admin -user bob:acme:member \
//	    -user gina:globex:admin -user nora::admin
//
// A user is NAME:ORG:ROLE; an empty ORG is a user whose session names no
// organisation (the console answers 403). Endpoints:
//
//	GET /login?user=NAME  signs in: sets the cookie "session" (a random
//	                      token) and redirects to ?next= (default
//	                      /console/, a path on this host only)
//	GET /logout           forgets the session
//	GET /session          forward_auth's endpoint: 200 with X-User-Id,
//	                      X-Org-Id (when the user has one) and X-Role for
//	                      the request's session cookie, or the token in
//	                      "Authorization: Session <token>"; 401 otherwise
package main

import (
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
	"sync"
)

// user is a configured account.
type user struct {
	ID, Org, Role string
}

// service holds the users and the open sessions.
type service struct {
	users map[string]user

	mu       sync.Mutex
	sessions map[string]user // by token
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9100", "address to listen on")
	var specs userFlags
	flag.Var(&specs, "user", "a user NAME:ORG:ROLE (repeatable; ORG may be empty)")
	flag.Parse()
	svc, err := newService(specs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sessionsvc:", err)
		os.Exit(2)
	}
	log.Printf("sessionsvc listening on %s with %d users", *listen, len(svc.users))
	log.Fatal(http.ListenAndServe(*listen, svc))
}

// userFlags collects -user flags.
type userFlags []string

func (u *userFlags) String() string     { return strings.Join(*u, " ") }
func (u *userFlags) Set(v string) error { *u = append(*u, v); return nil }

func newService(specs []string) (*service, error) {
	if len(specs) == 0 {
		return nil, fmt.Errorf("no users: give -user NAME:ORG:ROLE")
	}
	s := &service{users: make(map[string]user), sessions: make(map[string]user)}
	for _, spec := range specs {
		parts := strings.Split(spec, ":")
		if len(parts) != 3 || parts[0] == "" || parts[2] == "" {
			return nil, fmt.Errorf("user %q is not NAME:ORG:ROLE", spec)
		}
		s.users[parts[0]] = user{ID: parts[0], Org: parts[1], Role: parts[2]}
	}
	return s, nil
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	switch r.URL.Path {
	case "/login":
		s.login(w, r)
	case "/logout":
		if c, err := r.Cookie("session"); err == nil {
			s.mu.Lock()
			delete(s.sessions, c.Value)
			s.mu.Unlock()
		}
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "", Path: "/", MaxAge: -1})
		fmt.Fprintln(w, "signed out")
	case "/session":
		s.session(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (s *service) login(w http.ResponseWriter, r *http.Request) {
	u, ok := s.users[r.URL.Query().Get("user")]
	if !ok {
		http.Error(w, "no such user: sign in with /login?user=NAME", http.StatusUnauthorized)
		return
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	token := base64.RawURLEncoding.EncodeToString(b)
	s.mu.Lock()
	s.sessions[token] = u
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "session", Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	next := r.URL.Query().Get("next")
	// Only a path on this host: no open redirect.
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.Contains(next, `\`) {
		next = "/console/"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// session answers forward_auth: who the request's session belongs to.
func (s *service) session(w http.ResponseWriter, r *http.Request) {
	token := ""
	if c, err := r.Cookie("session"); err == nil {
		token = c.Value
	} else if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Session "); ok {
		token = strings.TrimSpace(t)
	}
	s.mu.Lock()
	u, ok := s.sessions[token]
	s.mu.Unlock()
	if token == "" || !ok {
		http.Error(w, "not signed in: sign in with /login?user=NAME", http.StatusUnauthorized)
		return
	}
	w.Header().Set("X-User-Id", u.ID)
	if u.Org != "" {
		w.Header().Set("X-Org-Id", u.Org)
	}
	w.Header().Set("X-Role", u.Role)
	w.WriteHeader(http.StatusOK)
}
