package progress

import (
	"encoding/json"
	"io"
	"math"
	"sync"
	"time"

	"github.com/kurabackup/kura/internal/phase"
)

// Event kinds.
const (
	JobStart     = "job-start"
	VMStart      = "vm-start"
	DiskStart    = "disk-start"
	DiskProgress = "disk-progress"
	DiskDone     = "disk-done"
	VMDone       = "vm-done"
	VMFailed     = "vm-failed"
	VMRetry      = "vm-retry"
	JobDone      = "job-done"
	Message      = "message"
)

// Event is one step of a long operation. Which fields are meaningful
// depends on Kind: Done and Total (bytes) on disk events, Err on failures
// and retries, Msg on messages. Rate (bytes/s) and ETA may be left zero,
// meaning unknown; sinks that show them compute their own.
type Event struct {
	Time  time.Time
	Kind  string
	Job   string
	VM    string
	Disk  string
	Done  int64
	Total int64
	Rate  float64
	ETA   time.Duration
	Err   string
	Msg   string
	Data  map[string]any
}

// wireEvent is the JSON form of an Event: lower-case keys, ETA in seconds.
type wireEvent struct {
	Time  time.Time      `json:"time"`
	Kind  string         `json:"kind"`
	Job   string         `json:"job,omitempty"`
	VM    string         `json:"vm,omitempty"`
	Disk  string         `json:"disk,omitempty"`
	Done  int64          `json:"done,omitempty"`
	Total int64          `json:"total,omitempty"`
	Rate  float64        `json:"rate,omitempty"`
	ETA   float64        `json:"eta,omitempty"`
	Err   string         `json:"error,omitempty"`
	Msg   string         `json:"msg,omitempty"`
	Phase string         `json:"phase,omitempty"`
	Data  map[string]any `json:"data,omitempty"`
}

// PhaseOf is the job or VM phase (package phase) an event of this kind
// marks the start of: vm-start Running, vm-retry Retrying, vm-done
// Succeeded, vm-failed Failed, job-start Running; "" for the others
// (job-done carries the job's final phase in Data["state"]).
func PhaseOf(kind string) string {
	switch kind {
	case JobStart:
		return string(phase.Running)
	case VMStart:
		return string(phase.VMRunning)
	case VMRetry:
		return string(phase.Retrying)
	case VMDone:
		return string(phase.Succeeded)
	case VMFailed:
		return string(phase.VMFailed)
	}
	return ""
}

// MarshalJSON encodes e with lower-case keys, the rate in bytes/s and the
// ETA in seconds. Empty fields are omitted; a NaN or infinite rate is
// dropped.
func (e Event) MarshalJSON() ([]byte, error) {
	w := wireEvent{Time: e.Time, Kind: e.Kind, Job: e.Job, VM: e.VM, Disk: e.Disk, Done: e.Done, Total: e.Total,
		Rate: e.Rate, ETA: e.ETA.Seconds(), Err: e.Err, Msg: e.Msg, Phase: PhaseOf(e.Kind), Data: e.Data}
	if math.IsNaN(w.Rate) || math.IsInf(w.Rate, 0) {
		w.Rate = 0
	}
	return json.Marshal(w)
}

// UnmarshalJSON decodes the form MarshalJSON writes.
func (e *Event) UnmarshalJSON(b []byte) error {
	var w wireEvent
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	eta := time.Duration(0)
	if s := w.ETA * float64(time.Second); s > 0 && s < math.MaxInt64 {
		eta = time.Duration(s)
	}
	*e = Event{Time: w.Time, Kind: w.Kind, Job: w.Job, VM: w.VM, Disk: w.Disk, Done: w.Done, Total: w.Total,
		Rate: w.Rate, ETA: eta, Err: w.Err, Msg: w.Msg, Data: w.Data}
	return nil
}

// Sink receives events. Emit must be safe for concurrent use and must not
// block for long: it is called from the data path.
type Sink interface {
	Emit(Event)
}

type nop struct{}

func (nop) Emit(Event) {}

// Nop returns a sink that drops every event.
func Nop() Sink { return nop{} }

// Multi returns a sink that forwards every event to each of sinks in turn.
func Multi(sinks ...Sink) Sink { return multi(sinks) }

type multi []Sink

func (m multi) Emit(e Event) {
	for _, s := range m {
		s.Emit(e)
	}
}

// JSONSink writes each event as one JSON object on its own line. Events
// with a zero Time are stamped with the current time in UTC.
type JSONSink struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
	err error
}

// NewJSON returns a sink writing JSON lines to w.
func NewJSON(w io.Writer) *JSONSink {
	return &JSONSink{w: w, now: time.Now}
}

// Emit writes e. After the first write error every event is dropped; Err
// reports that error.
func (s *JSONSink) Emit(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = s.now().UTC()
	}
	b, err := json.Marshal(e)
	if err != nil {
		// Only Data can fail to encode; keep the event, report the problem.
		e.Data = map[string]any{"encode_error": err.Error()}
		if b, err = json.Marshal(e); err != nil {
			s.err = err
			return
		}
	}
	b = append(b, '\n')
	if _, err := s.w.Write(b); err != nil {
		s.err = err
	}
}

// Err returns the first error writing to the underlying writer, if any.
func (s *JSONSink) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
