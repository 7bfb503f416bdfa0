package procinfo

import (
	"os"
	"os/exec"
	"testing"
)

func TestStartAndAlive(t *testing.T) {
	self := Self()
	if self == 0 {
		t.Fatal("Self() = 0 for a running process")
	}
	if !Alive(os.Getpid(), self) || !Alive(os.Getpid(), 0) {
		t.Error("this process is not alive")
	}
	if Alive(os.Getpid(), self+1) {
		t.Error("a different start time names the same process")
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	if Alive(cmd.Process.Pid, 0) {
		t.Errorf("exited process %d is alive", cmd.Process.Pid)
	}
	if Start(-1) != 0 || Start(0) != 0 {
		t.Error("Start of an invalid pid is not 0")
	}
}
