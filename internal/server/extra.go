package server

import (
	"github.com/kurabackup/kura/internal/fsread"
	"github.com/kurabackup/kura/internal/retention"
)

// extraRoutes are the endpoints of later parts (policy simulation,
// capacity, notifications, and what the console needs besides).
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
		{method: "GET", path: APIPrefix + "/points/{id}/volumes", summary: "The partitions of a point's disk and their filesystems",
			query: []string{"disk"}, out: []fsread.Volume{}, h: s.volumes},
		{method: "GET", path: APIPrefix + "/points/{id}/files/search", summary: "Find files by name below a directory of a point's guest filesystem",
			query: []string{"disk", "volume", "path", "name", "limit"}, out: FileSearch{}, h: s.searchFiles},
		{method: "GET", path: APIPrefix + "/points/{id}/files/archive", summary: "Download a directory of a point's guest filesystem as a tar or zip archive",
			query: []string{"disk", "volume", "path", "format"}, raw: s.archiveFiles},
		{method: "GET", path: APIPrefix + "/damage", summary: "Verify problems: damaged objects of every repository and the points they affect",
			out: []DamageInfo{}, h: s.damage},
		{method: "GET", path: APIPrefix + "/connections", summary: "The hypervisor connections one may restore to",
			out: []ConnectionInfo{}, h: s.connections},
		{method: "GET", path: APIPrefix + "/notifications", summary: "Notification destinations, rules and delivery counts",
			out: NotificationsInfo{}, h: s.notifications},
		{method: "GET", path: APIPrefix + "/capacity", summary: "Storage per group and repository: measured churn × retention, and when it fills",
			out: []RepositoryCapacity{}, h: s.capacityRoute},
	}
}
