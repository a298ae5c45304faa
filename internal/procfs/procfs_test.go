package procfs

import (
	"os"
	"testing"
)

func TestPeakRSS(t *testing.T) {
	n, err := PeakRSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if n < 1<<20 || n > 64<<30 {
		t.Errorf("PeakRSS of this test = %d bytes, want a plausible size", n)
	}
	if _, err := PeakRSS(-1); err == nil {
		t.Error("PeakRSS(-1) = nil error, want one")
	}
}
