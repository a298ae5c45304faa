package clickhouse

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testPKI is a private CA, a server certificate it signed (localhost,
// 127.0.0.1) and a client certificate it signed, the PEM files in a temp dir.
type testPKI struct {
	CAFile, ClientCertFile, ClientKeyFile string
	ServerCertFile, ServerKeyFile         string
	CAs                                   *x509.CertPool
	Server                                tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, caDER := issue(t, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "relay test CA"},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, srvDER := issue(t, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "clickhouse"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca, caKey)
	cliKey, cliDER := issue(t, &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "relay"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca, caKey)
	p := &testPKI{CAFile: filepath.Join(dir, "ca.pem"), ClientCertFile: filepath.Join(dir, "client.pem"),
		ClientKeyFile: filepath.Join(dir, "client.key"), ServerCertFile: filepath.Join(dir, "server.pem"),
		ServerKeyFile: filepath.Join(dir, "server.key"), CAs: x509.NewCertPool(),
		Server: tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}}
	p.CAs.AddCert(ca)
	writePEM(t, p.CAFile, "CERTIFICATE", caDER)
	writePEM(t, p.ClientCertFile, "CERTIFICATE", cliDER)
	writePEM(t, p.ServerCertFile, "CERTIFICATE", srvDER)
	writeKey(t, p.ClientKeyFile, cliKey)
	writeKey(t, p.ServerKeyFile, srvKey)
	return p
}

func writeKey(t *testing.T, path string, key *ecdsa.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, path, "EC PRIVATE KEY", der)
}

// issue makes a certificate from tmpl, signed by parent (self-signed when nil).
func issue(t *testing.T, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// The CA and client certificate parameters become the TLS configuration
// of every connection (clickhouse-go's and the inserter's), never query
// settings; a TLS-looking parameter the relay does not know is refused
// rather than sent to the server as a setting.
func TestURLTLSFiles(t *testing.T) {
	p := newTestPKI(t)
	q := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return "clickhouse://ch:9440/events?" + v.Encode()
	}
	good := q("secure", "true", "tls_ca_file", p.CAFile, "tls_cert_file", p.ClientCertFile, "tls_key_file", p.ClientKeyFile, "max_execution_time", "60")
	opts, err := parseDSN(good)
	if err != nil {
		t.Fatalf("parseDSN: %v", err)
	}
	if opts.TLS == nil || opts.TLS.RootCAs == nil || len(opts.TLS.Certificates) != 1 || opts.TLS.InsecureSkipVerify {
		t.Fatalf("TLS = %+v, want the CA as roots and one client certificate, verifying", opts.TLS)
	}
	if _, ok := opts.Settings["max_execution_time"]; !ok || len(opts.Settings) != 1 {
		t.Errorf("settings = %v, want max_execution_time alone (no TLS file as a setting)", opts.Settings)
	}
	want := driverReading(t, *opts)
	got, err := inserterReading(t, opts)
	if err != nil || !equalReading(got, want) {
		t.Errorf("inserter reads %+v (%v), clickhouse-go %+v", got, err, want)
	}
	in, err := newInserter(opts)
	if err != nil || in.opts.TLS != opts.TLS {
		t.Errorf("the inserter does not dial with the URL's TLS configuration (%v)", err)
	}

	for _, tt := range []struct{ name, url, want string }{
		{"unknown tls_ parameter", q("secure", "true", "tls_ca", p.CAFile), "tls_ca"},
		{"libpq's name", q("secure", "true", "sslrootcert", p.CAFile), "sslrootcert"},
		{"CA without secure", q("tls_ca_file", p.CAFile), "secure=true"},
		{"certificate without key", q("secure", "true", "tls_cert_file", p.ClientCertFile), "tls_key_file"},
		{"missing CA file", q("secure", "true", "tls_ca_file", p.CAFile+".nope"), "tls_ca_file"},
		{"CA file without a certificate", q("secure", "true", "tls_ca_file", p.ClientKeyFile), "no PEM certificate"},
		{"CA with skip_verify", q("secure", "true", "skip_verify", "true", "tls_ca_file", p.CAFile), "skip_verify"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseDSN(tt.url)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseDSN(%s) = %v, want an error naming %q", tt.url, err, tt.want)
			}
		})
	}
}
