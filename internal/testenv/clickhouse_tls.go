package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// TLSServerFiles are the PEM files of a TLS ClickHouse: its certificate
// and key, and the CA whose client certificates it requires.
type TLSServerFiles struct {
	Cert, Key, ClientCA string
}

// StartClickHouseTLS starts a ClickHouse server of the test's own that
// speaks the native protocol only over TLS, requiring a client certificate
// signed by f.ClientCA, and returns its secure native address; the server
// is stopped when the test ends. It skips when clickhouse-server is not
// installed (scripts/services.sh installs it).
func StartClickHouseTLS(t TB, f TLSServerFiles) string {
	t.Helper()
	bin, err := exec.LookPath("clickhouse-server")
	if err != nil {
		t.Skip("clickhouse-server not installed: run `make test` (scripts/services.sh installs it)")
	}
	dir, err := os.MkdirTemp("", "relay-chtls-")
	if err != nil {
		t.Fatal(err)
	}
	secure, httpAddr := FreeAddr(t), FreeAddr(t)
	conf := filepath.Join(dir, "config.xml")
	if err := os.WriteFile(conf, []byte(tlsServerConfig(dir, port(secure), port(httpAddr), f)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "users.xml"), []byte(tlsServerUsers), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config-file="+conf)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start clickhouse-server: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		_ = out.Close()
		_ = os.RemoveAll(dir)
	})
	Eventually(t, 60*time.Second, "the TLS ClickHouse answers /ping", func() error {
		select {
		case err := <-exited:
			exited <- err
			log, _ := os.ReadFile(filepath.Join(dir, "err.log"))
			t.Fatalf("clickhouse-server exited: %v\n%s", err, log)
		default:
		}
		return ping(httpAddr)
	})
	return secure
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func ping(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/ping", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	if !strings.HasPrefix(string(b), "Ok.") {
		return fmt.Errorf("/ping answered %q", b)
	}
	return nil
}

// tlsServerConfig has no plain native port: every native connection is
// TLS, verified both ways (verificationMode strict asks for the client's
// certificate). The HTTP port is plain, for /ping only.
func tlsServerConfig(dir, securePort, httpPort string, f TLSServerFiles) string {
	return `<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>` + dir + `/server.log</log><errorlog>` + dir + `/err.log</errorlog></logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port_secure>` + securePort + `</tcp_port_secure>
    <http_port>` + httpPort + `</http_port>
    <openSSL>
        <server>
            <certificateFile>` + f.Cert + `</certificateFile>
            <privateKeyFile>` + f.Key + `</privateKeyFile>
            <caConfig>` + f.ClientCA + `</caConfig>
            <verificationMode>strict</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>false</cacheSessions>
            <disableProtocols>sslv2,sslv3</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>
    <max_concurrent_queries>20</max_concurrent_queries>
    <mark_cache_size>67108864</mark_cache_size>
    <path>` + dir + `/data/</path>
    <tmp_path>` + dir + `/tmp/</tmp_path>
    <user_files_path>` + dir + `/user_files/</user_files_path>
    <format_schema_path>` + dir + `/format_schemas/</format_schema_path>
    <users_config>` + dir + `/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
</yandex>
`
}

const tlsServerUsers = `<?xml version="1.0"?>
<yandex>
    <profiles><default></default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`
