package server

import (
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/kurabackup/kura/internal/auth"
	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/hypervisor"
)

// change applies fn to a copy of the running configuration and, when the
// result is valid, writes it to the file, makes it the running one, and
// records it in the audit log. An invalid result changes nothing.
func (s *Server) change(rc *reqCtx, action, target string, detail any, fn func(c *config.Config) error) error {
	if err := rc.p.Check(auth.Configure, ""); err != nil && action != "token.create" && action != "token.revoke" {
		return err
	}
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	cur, _ := s.config()
	next, err := cur.Clone()
	if err != nil {
		return err
	}
	if err := fn(next); err != nil {
		return err
	}
	if err := next.Save(s.opts.ConfigPath); err != nil {
		s.audit(rc, "failed", action, target, err)
		var ps config.Problems
		if errors.As(err, &ps) {
			return badRequest("%v", err)
		}
		return err
	}
	if err := s.apply(rc.ctx, next); err != nil {
		s.audit(rc, "failed", action, target, err)
		return err
	}
	s.audit(rc, "ok", action, target, detail)
	s.configChanged(rc.ctx)
	return nil
}

func (s *Server) putGroup(rc *reqCtx) (any, error) {
	name := rc.r.PathValue("name")
	var g config.Group
	if err := rc.decode(&g); err != nil {
		return nil, err
	}
	if g.Name == "" {
		g.Name = name
	}
	if g.Name != name {
		return nil, badRequest("the body names group %q, the path %q", g.Name, name)
	}
	if _, err := hypervisor.ParseSelectors(g.Selectors); err != nil {
		return nil, badRequest("%v", err)
	}
	err := s.change(rc, "group.put", name, g, func(c *config.Config) error {
		i := slices.IndexFunc(c.Groups, func(x config.Group) bool { return x.Name == name })
		if i < 0 {
			c.Groups = append(c.Groups, g)
		} else {
			c.Groups[i] = g
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	cfg, _ := s.config()
	out, _ := cfg.Group(name)
	return out, nil
}

func (s *Server) deleteGroup(rc *reqCtx) (any, error) {
	name := rc.r.PathValue("name")
	err := s.change(rc, "group.delete", name, nil, func(c *config.Config) error {
		i := slices.IndexFunc(c.Groups, func(x config.Group) bool { return x.Name == name })
		if i < 0 {
			return notFound("no group %q", name)
		}
		for _, u := range c.Users {
			if slices.Contains(u.Groups, name) {
				return badRequest("user %s restores group %s: change the user first", u.Name, name)
			}
		}
		c.Groups = slices.Delete(c.Groups, i, i+1)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{"deleted": name}, nil
}

// preview evaluates a group's selectors on the live inventory.
func (s *Server) preview(rc *reqCtx, g config.Group) (GroupPreview, error) {
	s.refreshInventory(rc.ctx)
	s.inv.mu.RLock()
	vms := s.inv.vms
	s.inv.mu.RUnlock()
	sels, err := hypervisor.ParseSelectors(g.Selectors)
	if err != nil {
		return GroupPreview{}, badRequest("%v", err)
	}
	conns := map[string]bool{}
	for _, cn := range rc.cfg.ConnectionsOf(g) {
		conns[cn.Name] = true
	}
	var pool []hypervisor.VM
	for _, v := range vms {
		if conns[v.Connection] {
			pool = append(pool, v.VM)
		}
	}
	picked, matches := hypervisor.SelectEach(rc.ctx, pool, sels, nil)
	pv := GroupPreview{Group: g.Name, VMs: []string{}}
	for _, vm := range picked {
		pv.VMs = append(pv.VMs, vm.Name)
	}
	for _, m := range matches {
		if m.Err != nil {
			pv.Unmatched = append(pv.Unmatched, m.Err.Error())
		}
	}
	return pv, nil
}

func (s *Server) listUsers(rc *reqCtx) (any, error) {
	if err := rc.p.Check(auth.Configure, ""); err != nil {
		return nil, err
	}
	out := []UserInfo{}
	for _, u := range rc.cfg.Users {
		out = append(out, UserInfo{Name: u.Name, Role: u.Role, Groups: u.Groups, Tokens: len(u.Tokens)})
	}
	return out, nil
}

func (s *Server) putUser(rc *reqCtx) (any, error) {
	name := rc.r.PathValue("name")
	var req UserRequest
	if err := rc.decode(&req); err != nil {
		return nil, err
	}
	hash := ""
	if req.Password != "" {
		h, err := auth.HashPassword(req.Password)
		if err != nil {
			return nil, badRequest("%v", err)
		}
		hash = h
	}
	err := s.change(rc, "user.put", name, map[string]any{"role": req.Role, "groups": req.Groups, "password_changed": hash != ""},
		func(c *config.Config) error {
			u, ok := c.User(name)
			if !ok {
				c.Users = append(c.Users, config.User{Name: name})
				u = &c.Users[len(c.Users)-1]
			}
			u.Role, u.Groups = req.Role, req.Groups
			if hash != "" {
				u.PasswordHash = hash
			}
			// Tokens never exceed their owner: narrow what a demotion left above.
			for i := range u.Tokens {
				if u.Tokens[i].Role != "" && !config.RoleAtMost(u.Tokens[i].Role, u.Role) {
					u.Tokens[i].Role = ""
				}
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	return UserInfo{Name: name, Role: req.Role, Groups: req.Groups}, nil
}

func (s *Server) deleteUser(rc *reqCtx) (any, error) {
	name := rc.r.PathValue("name")
	if name == rc.p.User {
		return nil, badRequest("you cannot remove yourself")
	}
	err := s.change(rc, "user.delete", name, nil, func(c *config.Config) error {
		i := slices.IndexFunc(c.Users, func(u config.User) bool { return u.Name == name })
		if i < 0 {
			return notFound("no user %q", name)
		}
		c.Users = slices.Delete(c.Users, i, i+1)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{"deleted": name}, nil
}

func (s *Server) listTokens(rc *reqCtx) (any, error) {
	out := []TokenInfo{}
	for _, u := range rc.cfg.Users {
		if u.Name != rc.p.User && !rc.p.Allows(auth.Configure, "") {
			continue
		}
		for _, t := range u.Tokens {
			role := t.Role
			if role == "" {
				role = u.Role
			}
			out = append(out, TokenInfo{ID: t.ID, User: u.Name, Name: t.Name, Role: role, Created: t.Created, Expires: t.Expires})
		}
	}
	return out, nil
}

func (s *Server) makeToken(rc *reqCtx) (any, error) {
	var req TokenRequest
	if err := rc.decode(&req); err != nil {
		return nil, err
	}
	if rc.p.Token != "" {
		return nil, fmt.Errorf("%w: tokens are made by a signed-in user, not by another token", auth.ErrForbidden)
	}
	if req.Role != "" && !config.RoleAtMost(req.Role, rc.p.Role) {
		return nil, fmt.Errorf("%w: a token's role (%s) cannot exceed its owner's (%s)", auth.ErrForbidden, req.Role, rc.p.Role)
	}
	secret, rec, err := auth.NewToken(req.Name, req.Role, req.Expires, s.opts.Now())
	if err != nil {
		return nil, err
	}
	err = s.change(rc, "token.create", rc.p.User, map[string]string{"id": rec.ID, "name": rec.Name, "role": rec.Role},
		func(c *config.Config) error {
			u, ok := c.User(rc.p.User)
			if !ok {
				return notFound("no user %q", rc.p.User)
			}
			u.Tokens = append(u.Tokens, rec)
			return nil
		})
	if err != nil {
		return nil, err
	}
	role := rec.Role
	if role == "" {
		role = rc.p.Role
	}
	return created{code: http.StatusCreated, body: TokenResponse{ID: rec.ID, Secret: secret, Name: rec.Name, Role: role, Expires: rec.Expires}}, nil
}

func (s *Server) revokeToken(rc *reqCtx) (any, error) {
	id := rc.r.PathValue("id")
	err := s.change(rc, "token.revoke", id, nil, func(c *config.Config) error {
		for ui := range c.Users {
			u := &c.Users[ui]
			if u.Name != rc.p.User && !rc.p.Allows(auth.Configure, "") {
				continue
			}
			if i := slices.IndexFunc(u.Tokens, func(t config.Token) bool { return t.ID == id }); i >= 0 {
				u.Tokens = slices.Delete(u.Tokens, i, i+1)
				return nil
			}
		}
		return notFound("no token %q of yours", id)
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{"revoked": id}, nil
}
