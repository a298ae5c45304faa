package bench

import (
	"testing"
	"time"
)

func TestLatencySchedule(t *testing.T) {
	steady := LatencyConfig{Rate: 100, Duration: time.Second}
	if due := steady.schedule(); len(due) != 100 || due[1] != 10*time.Millisecond || due[99] != 990*time.Millisecond {
		t.Errorf("steady 100/s for 1s: %d events, due[1] %v, due[99] %v", len(due), due[1], due[99])
	}
	if got := steady.Label(); got != "100" {
		t.Errorf("Label = %q", got)
	}

	// 1 s at 10/s, 1 s at 100/s, 1 s at 10/s.
	stepped := LatencyConfig{Rate: 10, StepRate: 100, StepEvery: time.Second, Duration: 3 * time.Second}
	due := stepped.schedule()
	if len(due) != 120 {
		t.Fatalf("stepped schedule has %d events, want 10 + 100 + 10", len(due))
	}
	if due[9] != 900*time.Millisecond || due[10] != time.Second || due[11] != time.Second+10*time.Millisecond {
		t.Errorf("around the first step: %v %v %v", due[9], due[10], due[11])
	}
	if due[110] != 2*time.Second || due[119] != 2900*time.Millisecond {
		t.Errorf("around the second step: %v %v", due[110], due[119])
	}
	for i := 1; i < len(due); i++ {
		if due[i] <= due[i-1] {
			t.Fatalf("due[%d] = %v not after due[%d] = %v", i, due[i], i-1, due[i-1])
		}
	}
	if got := stepped.Label(); got != "10/100" {
		t.Errorf("Label = %q", got)
	}
}
