package clickhouse

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"strings"

	ch "github.com/ClickHouse/clickhouse-go/v2"
)

// CLICKHOUSE_URL's TLS parameters beyond clickhouse-go's own (secure,
// skip_verify, tls_server_name). clickhouse-go sends a parameter it does
// not know to the server as a query setting, so the relay takes these out
// of the URL before clickhouse-go reads it.
const (
	// paramCAFile names a PEM file of the CAs to trust instead of the
	// system's (a private CA).
	paramCAFile = "tls_ca_file"
	// paramCertFile and paramKeyFile name the PEM client certificate and
	// its key, for a server that asks for one.
	paramCertFile = "tls_cert_file"
	paramKeyFile  = "tls_key_file"
)

// tlsFiles are the relay's TLS parameters of one URL.
type tlsFiles struct{ ca, cert, key string }

// takeTLSFiles returns dsn without the relay's TLS parameters, and those.
// A parameter that looks like TLS but is neither the relay's nor
// clickhouse-go's (tls_ca, sslrootcert, …) is refused: sent as a setting
// it would fail at the server, or be ignored while the user believes it
// holds.
func takeTLSFiles(dsn string) (string, tlsFiles, error) {
	var f tlsFiles
	u, err := url.Parse(dsn)
	if err != nil || u.RawQuery == "" {
		return dsn, f, nil // clickhouse-go reports a malformed URL
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return dsn, f, nil
	}
	var unknown []string
	for k := range q {
		switch k {
		case paramCAFile, paramCertFile, paramKeyFile, "secure", "skip_verify", "tls_server_name":
		default:
			if l := strings.ToLower(k); strings.HasPrefix(l, "tls") || strings.HasPrefix(l, "ssl") || strings.Contains(l, "cert") {
				unknown = append(unknown, k)
			}
		}
	}
	if len(unknown) > 0 {
		return "", f, fmt.Errorf("unknown TLS parameter %s: the TLS parameters are secure, skip_verify, tls_server_name, %s, %s and %s",
			strings.Join(unknown, ", "), paramCAFile, paramCertFile, paramKeyFile)
	}
	f = tlsFiles{ca: q.Get(paramCAFile), cert: q.Get(paramCertFile), key: q.Get(paramKeyFile)}
	if f == (tlsFiles{}) {
		return dsn, f, nil
	}
	q.Del(paramCAFile)
	q.Del(paramCertFile)
	q.Del(paramKeyFile)
	u.RawQuery = q.Encode()
	return u.String(), f, nil
}

// apply loads the files into opts.TLS, which clickhouse-go's ParseDSN set
// for secure=true; both kinds of connection dial with it.
func (f tlsFiles) apply(opts *ch.Options) error {
	if f == (tlsFiles{}) {
		return nil
	}
	switch {
	case opts.TLS == nil:
		return fmt.Errorf("%s, %s and %s need secure=true", paramCAFile, paramCertFile, paramKeyFile)
	case opts.TLS.InsecureSkipVerify && f.ca != "":
		return fmt.Errorf("skip_verify=true turns verification off: %s would be ignored; leave one out", paramCAFile)
	case (f.cert == "") != (f.key == ""):
		return fmt.Errorf("a client certificate needs both %s and %s", paramCertFile, paramKeyFile)
	}
	if f.ca != "" {
		pem, err := os.ReadFile(f.ca)
		if err != nil {
			return fmt.Errorf("%s: %w", paramCAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s %s: no PEM certificate in it", paramCAFile, f.ca)
		}
		opts.TLS.RootCAs = pool
	}
	if f.cert != "" {
		c, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return fmt.Errorf("%s, %s: %w", paramCertFile, paramKeyFile, err)
		}
		opts.TLS.Certificates = []tls.Certificate{c}
	}
	return nil
}

// CheckTLSParams reports what is wrong with dsn's TLS parameters (an
// unknown one, a file that cannot be read, secure=true missing) as Open
// would, for configuration checks before connecting. It says nothing of
// the rest of the URL.
func CheckTLSParams(dsn string) error {
	rest, files, err := takeTLSFiles(dsn)
	if err != nil {
		return err
	}
	opts, err := ch.ParseDSN(rest)
	if err != nil {
		return nil // not a TLS problem: the caller reports the URL
	}
	return files.apply(opts)
}
