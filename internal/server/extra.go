package server

import "github.com/kurabackup/kura/internal/retention"

// extraRoutes are the endpoints of later parts (policy simulation,
// capacity, notifications).
func (s *Server) extraRoutes() []route {
	return []route{
		{method: "POST", path: APIPrefix + "/notifications/test", summary: "Send a test notification to one destination",
			in: NotifyTestRequest{}, out: map[string]string{}, h: s.notifyTest},
		{method: "POST", path: APIPrefix + "/policy/simulate", summary: "What a retention policy keeps of a span of hypothetical backups",
			in: SimulateRequest{}, out: retention.Simulation{}, h: s.simulate},
		{method: "GET", path: APIPrefix + "/schedules", summary: "Every schedule with its next and last run",
			out: []ScheduleInfo{}, h: s.listSchedules},
		{method: "PUT", path: APIPrefix + "/vms/{uuid}/tags", summary: "Replace a VM's kura tags (groups select them with tag:GLOB)",
			in: TagsRequest{}, out: VMStatus{}, h: s.putTags},
		{method: "GET", path: APIPrefix + "/capacity", summary: "Storage per group and repository: measured churn × retention, and when it fills",
			out: []RepositoryCapacity{}, h: s.capacityRoute},
	}
}
