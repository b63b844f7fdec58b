// Package serve is `spillway serve`: a local web app for reviewers over the
// same persist operations the CLI uses. It holds neither the state
// directory's lock nor the store between requests.
package serve

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/spillway/spillway/persist"
)

// Config says what a Server serves and to whom.
type Config struct {
	// Persist opens the state directory for one request; its LockTimeout
	// is how long a request waits for a CLI command before it answers 503.
	Persist persist.Options
	// Reviewer is recorded as deciding the reviews made in the browser
	// ("" = the OS user running serve).
	Reviewer string
	// Addr is the address the server listens on (host:port); requests
	// must name it (or localhost on its port) in their Host header.
	Addr string
	// TLS says that the server is reached over https (a non-loopback
	// address needs it); the session cookie is then Secure.
	TLS bool
	// Warn, when set, is told about trouble that does not fail a request.
	Warn func(msg string)
	// Sandbox and Host, when set, scope the review queue and the audit
	// log to one sandbox and to what one host wrote, whatever a request's
	// query asks (serve --sandbox, --host).
	Sandbox, Host string
}

// Server is the web app. Its handler is safe for concurrent use.
type Server struct {
	cfg   Config
	hosts map[string]bool
	pages map[string]*template.Template
	mux   *http.ServeMux

	envMu sync.Mutex // one request at a time holds the state directory

	mu        sync.Mutex
	token     string // the one-time login token; "" once used
	sessions  map[string]*session
	retryWait time.Duration
}

type session struct {
	csrf    string
	created time.Time
}

const (
	// cookiePrefix and the port name the session cookie: browsers
	// share cookies across ports, so two servers must not share one.
	cookiePrefix = "spillway_session_"
	csrfField    = "csrf"
)

// New returns a server for cfg with a fresh one-time login token.
func New(cfg Config) (*Server, error) {
	if cfg.Persist.LockTimeout <= 0 {
		cfg.Persist.LockTimeout = 2 * time.Second
	}
	if cfg.Persist.What == "" {
		cfg.Persist.What = "serve (one request)"
	}
	hosts, err := allowedHosts(cfg.Addr)
	if err != nil {
		return nil, err
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, hosts: hosts, pages: pages, token: randomHex(), sessions: map[string]*session{}, retryWait: 2 * time.Second}
	s.routes()
	return s, nil
}

// LoginURL is the URL to open once: it trades the token for a session.
func (s *Server) LoginURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.origin() + "/login?token=" + url.QueryEscape(s.token)
}

// allowedHosts lists the Host header values that name this server: its
// address and, on a loopback address, localhost on the same port. Any
// other Host (a DNS rebinding attack's) is refused.
func allowedHosts(addr string) (map[string]bool, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{addr: true}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		out[net.JoinHostPort("localhost", port)] = true
		out[net.JoinHostPort(ip.String(), port)] = true
	}
	return out, nil
}

// origin is the scheme and address pages are served from.
func (s *Server) origin() string {
	if s.cfg.TLS {
		return "https://" + s.cfg.Addr
	}
	return "http://" + s.cfg.Addr
}

func (s *Server) cookieName() string {
	_, port, _ := net.SplitHostPort(s.cfg.Addr)
	return cookiePrefix + port
}

func (s *Server) scheme() string {
	if s.cfg.TLS {
		return "https"
	}
	return "http"
}

func randomHex() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}

// csp allows nothing but this server's own script, style and images.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// ServeHTTP adds the security headers, checks the Host header and the
// session, then runs the route.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin") // "no-referrer" would make the browser send "Origin: null"
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if !s.hosts[strings.ToLower(r.Host)] {
		plainError(w, http.StatusForbidden, "spillway serve: wrong Host header: open the address that spillway serve printed")
		return
	}
	if r.URL.Path == "/login" {
		s.login(w, r)
		return
	}
	sess := s.session(r)
	if sess == nil {
		plainError(w, http.StatusUnauthorized, "spillway serve: not logged in: open the URL with the token that spillway serve printed")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if err := s.checkPost(r, sess); err != nil {
			plainError(w, http.StatusForbidden, "spillway serve: "+err.Error())
			return
		}
	}
	s.mux.ServeHTTP(w, r.WithContext(withSession(r.Context(), sess)))
}

// login trades the one-time token for a session cookie and redirects to a
// URL without the token. A used or wrong token gets 401.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if s.session(r) != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	given := r.URL.Query().Get("token")
	s.mu.Lock()
	ok := s.token != "" && subtle.ConstantTimeCompare([]byte(given), []byte(s.token)) == 1
	var id string
	if ok {
		s.token = ""
		id = randomHex()
		s.sessions[id] = &session{csrf: randomHex(), created: time.Now()}
	}
	s.mu.Unlock()
	if !ok {
		plainError(w, http.StatusUnauthorized, "spillway serve: wrong or used token: restart spillway serve for a new one")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(), Value: id, Path: "/", HttpOnly: true, Secure: s.cfg.TLS, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) session(r *http.Request) *session {
	c, err := r.Cookie(s.cookieName())
	if err != nil || c.Value == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[c.Value]
}

// checkPost refuses a state-changing request without the session's CSRF
// token or from another origin.
func (s *Server) checkPost(r *http.Request, sess *session) error {
	if r.Method != http.MethodPost {
		return errors.New("method not allowed")
	}
	if o := r.Header.Get("Origin"); o != "" && o != s.origin() && o != s.scheme()+"://"+r.Host {
		return errors.New("cross-origin request refused")
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return errors.New("cross-site request refused")
	}
	r.Body = http.MaxBytesReader(nil, r.Body, 1<<20)
	got := r.PostFormValue(csrfField)
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(sess.csrf)) != 1 {
		return errors.New("missing or wrong CSRF token: reload the page and try again")
	}
	return nil
}

// plainError writes a short text/plain error page.
func plainError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	w.Write([]byte(msg + "\n"))
}
