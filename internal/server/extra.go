package server

// extraRoutes are the endpoints of later parts (policy simulation,
// capacity, notifications).
func (s *Server) extraRoutes() []route {
	return []route{
		{method: "POST", path: APIPrefix + "/notifications/test", summary: "Send a test notification to one destination",
			in: NotifyTestRequest{}, out: map[string]string{}, h: s.notifyTest},
	}
}
