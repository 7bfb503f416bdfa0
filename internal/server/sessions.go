package server

import (
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"
)

// Console sessions: a signed-in browser holds a random session id in an
// HttpOnly, Secure, SameSite=Strict cookie; requests that change anything
// must also carry the session's CSRF token in a header.
const (
	sessionCookie = "kura_session"
	csrfHeader    = "X-Kura-CSRF"
	sessionTTL    = 12 * time.Hour
)

type session struct {
	user    string
	csrf    string
	expires time.Time
}

type sessions struct {
	mu  sync.Mutex
	m   map[string]session
	now func() time.Time
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{m: map[string]session{}, now: now}
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for user and returns its id and CSRF token.
func (s *sessions) create(user string) (id string, sess session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for k, v := range s.m {
		if now.After(v.expires) {
			delete(s.m, k)
		}
	}
	id = randomToken()
	sess = session{user: user, csrf: randomToken(), expires: now.Add(sessionTTL)}
	s.m[id] = sess
	return id, sess
}

func (s *sessions) get(id string) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.m[id]
	if !ok || s.now().After(sess.expires) {
		delete(s.m, id)
		return session{}, false
	}
	return sess, true
}

func (s *sessions) drop(id string) {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}
