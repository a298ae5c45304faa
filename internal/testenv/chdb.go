package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"github.com/ebitengine/purego"
)

// The conformance suite (tests named TestConformance…) checks what the
// relay sends to ClickHouse against a current ClickHouse engine run in
// this process: chDB's libchdb.so (ClickHouse as a library, from the npm
// package @chdb/lib-linux-x64-gnu), which `scripts/services.sh chdb`
// fetches once and names in RELAY_CHDB_LIB. It is an engine, not a
// server: it checks SQL, types, table engines, settings and data formats,
// not the network protocol (docs/clickhouse-protocol.md does that from
// ClickHouse's source).
//
// The library's C API is bound here with purego (no cgo), as the Go module
// github.com/chdb-io/chdb-go binds it; that module is not imported because
// its package init loads the library and panics where it is missing, which
// would fail every test binary linking it on a machine without the
// library, not just skip the conformance tests.

// chdbLibEnv names the library; the conformance tests skip without it.
const chdbLibEnv = "RELAY_CHDB_LIB"

// Engine is the in-process ClickHouse engine. The library holds one
// connection per process, so every test of a package shares it (see
// Engine.Database for isolation); calls are serialised.
type Engine struct {
	mu      sync.Mutex
	conn    uintptr // chdb_connection (the value chdb_connect points to)
	Version string  // SELECT version()
	api     chdbAPI
}

type chdbAPI struct {
	connect  func(argc int32, argv []*byte) *uintptr
	query    func(conn uintptr, q []byte, qlen uintptr, f []byte, flen uintptr) unsafe.Pointer
	buffer   func(res unsafe.Pointer) *byte
	length   func(res unsafe.Pointer) uintptr
	errorMsg func(res unsafe.Pointer) string // NULL reads as ""
	destroy  func(res unsafe.Pointer)
}

// engineOnce opens the engine once per test binary: the library cannot
// open a second connection in a process that closed one.
var engineOnce = sync.OnceValues(openEngine)

// NewEngine returns the process's engine, skipping t when RELAY_CHDB_LIB
// is unset and failing it when the library does not load.
func NewEngine(t TB) *Engine {
	t.Helper()
	if os.Getenv(chdbLibEnv) == "" {
		t.Skip(chdbLibEnv + " not set: the ClickHouse 26 conformance tests need chDB's libchdb.so; " +
			"`make test` fetches it (eval \"$(scripts/services.sh chdb)\" does it by hand)")
	}
	e, err := engineOnce()
	if err != nil {
		t.Fatalf("chdb engine: %v", err)
	}
	t.Logf("ClickHouse engine %s (chDB, in process)", e.Version)
	return e
}

func openEngine() (*Engine, error) {
	path := os.Getenv(chdbLibEnv)
	lib, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("load %s=%s: %w", chdbLibEnv, path, err)
	}
	e := &Engine{}
	for name, fn := range map[string]any{
		"chdb_connect": &e.api.connect, "chdb_query_n": &e.api.query,
		"chdb_result_buffer": &e.api.buffer, "chdb_result_length": &e.api.length,
		"chdb_result_error": &e.api.errorMsg, "chdb_destroy_query_result": &e.api.destroy,
	} {
		sym, err := purego.Dlsym(lib, name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		purego.RegisterFunc(fn, sym)
	}
	dir, err := engineDir()
	if err != nil {
		return nil, err
	}
	args := []string{"clickhouse", "--path=" + dir}
	argv := make([]*byte, len(args))
	for i, a := range args {
		argv[i] = &append([]byte(a), 0)[0]
	}
	ptr := e.api.connect(int32(len(argv)), argv)
	runtime.KeepAlive(argv)
	if ptr == nil || *ptr == 0 {
		return nil, errors.New("chdb_connect failed")
	}
	e.conn = *ptr
	out, err := e.Query("SELECT version()", "TSVRaw")
	if err != nil {
		return nil, err
	}
	e.Version = strings.TrimSpace(string(out))
	return e, nil
}

// Query runs one statement and returns its output in format. The
// statement may carry binary data (INSERT … FORMAT Native followed by the
// block's bytes).
func (e *Engine) Query(query, format string) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	q, f := []byte(query), []byte(format)
	q, f = append(q, 0), append(f, 0) // never empty; the lengths exclude the NUL
	res := e.api.query(e.conn, q, uintptr(len(q)-1), f, uintptr(len(f)-1))
	runtime.KeepAlive(q)
	runtime.KeepAlive(f)
	if res == nil {
		return nil, nil
	}
	defer e.api.destroy(res)
	if msg := e.api.errorMsg(res); msg != "" {
		return nil, errors.New(strings.TrimSpace(msg))
	}
	n := int(e.api.length(res))
	if n == 0 {
		return nil, nil
	}
	return append([]byte(nil), unsafe.Slice(e.api.buffer(res), n)...), nil
}

// Exec runs statements, failing t at the first error.
func (e *Engine) Exec(t TB, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := e.Query(s, "TSV"); err != nil {
			t.Fatalf("%s\n-> %v", s, err)
		}
	}
}

// Database creates a database for t, dropped when t ends, and makes it the
// engine's current one (the relay's queries name currentDatabase()).
func (e *Engine) Database(t TB) string {
	t.Helper()
	name := RandomName("conf_")
	e.Exec(t, "CREATE DATABASE "+name, "USE "+name)
	t.Cleanup(func() {
		_, _ = e.Query("DROP DATABASE IF EXISTS "+name, "TSV")
		_, _ = e.Query("USE default", "TSV")
	})
	return name
}

// engineDir makes the engine's data directory, named for this process:
// the library keeps it until the process exits, so each test binary
// removes the ones of processes that have exited (a few MB each).
func engineDir() (string, error) {
	old, _ := filepath.Glob(filepath.Join(os.TempDir(), "relay-chdb-*-*"))
	for _, d := range old {
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(d), "relay-chdb-%d-", &pid); err != nil || pid <= 0 {
			continue
		}
		if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			_ = os.RemoveAll(d)
		}
	}
	return os.MkdirTemp("", fmt.Sprintf("relay-chdb-%d-", os.Getpid()))
}
