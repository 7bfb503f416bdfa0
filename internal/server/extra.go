package server

// extraRoutes are the endpoints of later parts (policy simulation,
// capacity, notifications).
func (s *Server) extraRoutes() []route { return nil }
