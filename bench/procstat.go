package bench

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of the times in /proc/<pid>/stat (100 on
// every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// procStat is what the benchmarks read from /proc/<pid>/stat.
type procStat struct {
	ppid int
	// cpu is utime+stime; children is cutime+cstime (reaped children).
	cpu, children time.Duration
}

func readProcStat(pid int) (procStat, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name may contain spaces and parentheses: split after the
	// last ')'. Field 3 (state) is then f[0].
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	n := func(k int) int64 { v, _ := strconv.ParseInt(f[k-3], 10, 64); return v }
	return procStat{
		ppid:     int(n(4)),
		cpu:      time.Duration(n(14)+n(15)) * clockTick,
		children: time.Duration(n(16)+n(17)) * clockTick,
	}, nil
}

// ProcCPU is the CPU time (user+system) a live process has used.
func ProcCPU(pid int) (time.Duration, error) {
	s, err := readProcStat(pid)
	return s.cpu, err
}

// TreeCPU is the CPU time of a server and its direct children: the root's
// own time, plus what it collected from children that exited (cutime and
// cstime), plus the time of the children alive now. The difference of two
// readings is the server's CPU time in between, backends that ended
// included (PostgreSQL's postmaster reaps its backends at once). A child
// reaped during the scan would be lost, so the scan is repeated until the
// root's collected time did not change around it.
func TreeCPU(root int) (time.Duration, error) {
	for attempt := 0; ; attempt++ {
		before, err := readProcStat(root)
		if err != nil {
			return 0, err
		}
		alive, err := childrenCPU(root)
		if err != nil {
			return 0, err
		}
		after, err := readProcStat(root)
		if err != nil {
			return 0, err
		}
		if after.children == before.children || attempt == 10 {
			return after.cpu + after.children + alive, nil
		}
	}
}

func childrenCPU(root int) (time.Duration, error) {
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || pid == root {
			continue
		}
		c, err := readProcStat(pid)
		if err != nil || c.ppid != root {
			continue // gone meanwhile, or not a child
		}
		total += c.cpu
	}
	return total, nil
}

// PidFromFile reads the pid on the first line of a pid file (postmaster.pid,
// clickhouse.pid).
func PidFromFile(path string) (int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return 0, fmt.Errorf("pid file %s: %w", path, err)
	}
	return pid, nil
}

// ServerCPU reads the CPU time used so far by PostgreSQL (all processes)
// and by ClickHouse.
type ServerCPU struct {
	PG, CH time.Duration
}

// ReadServerCPU takes a reading; a server whose pid cannot be found reads 0.
func (s *Servers) ReadServerCPU() ServerCPU {
	var out ServerCPU
	if pid, err := PidFromFile(filepath.Join(s.PGDataDir, "postmaster.pid")); err == nil {
		out.PG, _ = TreeCPU(pid)
	}
	if pid, err := PidFromFile(s.CHPidFile); err == nil {
		out.CH, _ = ProcCPU(pid)
	}
	return out
}

// Sub is the CPU used between two readings.
func (c ServerCPU) Sub(earlier ServerCPU) ServerCPU {
	return ServerCPU{PG: c.PG - earlier.PG, CH: c.CH - earlier.CH}
}

// LoadAvg1 is the host's one-minute load average (NaN when unreadable): on
// a shared 2-core machine, a high value explains a slow run.
func LoadAvg1() float64 {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return math.NaN()
	}
	f := strings.Fields(string(raw))
	if len(f) == 0 {
		return math.NaN()
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return math.NaN()
	}
	return v
}
