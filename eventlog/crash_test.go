package eventlog

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// crashDirEnv makes the test binary act as the crashing child of
// TestCrashKeepsAppliedBatches.
const crashDirEnv = "ORDO_EVENTLOG_CRASH_DIR"

const crashBatches = 5

// TestCrashKeepsAppliedBatches applies batches with SyncWrites in a child
// process that then exits without closing the log (as kill -9 would leave it),
// and checks that every batch Apply returned for is there, whole.
func TestCrashKeepsAppliedBatches(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashChild(t, dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsAppliedBatches$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var head string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "head ") {
			head = line
		}
	}
	if head == "" {
		t.Fatalf("child printed no head:\n%s", out)
	}

	l := openDir(t, dir)
	defer l.Close()
	seq, hash := l.Applied()
	if got := fmt.Sprintf("head %d %v", seq, hash); got != head {
		t.Fatalf("after the crash %s, the child had applied %s", got, head)
	}
	entries := 0
	if err := l.Walk(func(*Entry) error { entries++; return nil }); err != nil {
		t.Fatal(err)
	}
	evs, _, err := l.ReadAll(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if entries != crashBatches || len(evs) != 2*crashBatches || l.LastPosition() != 2*crashBatches {
		t.Fatalf("after the crash: %d entries, %d events, last position %d", entries, len(evs), l.LastPosition())
	}
}

func crashChild(t *testing.T, dir string) {
	l := openDir(t, dir)
	for seq := uint64(1); seq <= crashBatches; seq++ {
		applyAppends(t, l, seq, appendSpec{"s", []int{int(2 * seq), int(2*seq + 1)}})
	}
	seq, hash := l.Applied()
	fmt.Printf("head %d %v\n", seq, hash)
	// No Close: the process ends the way a crash would end it.
	os.Exit(0)
}
