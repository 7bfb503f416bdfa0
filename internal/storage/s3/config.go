package s3

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Config says which bucket and prefix to use and how to talk to the store.
type Config struct {
	Endpoint string // host[:port]
	Secure   bool   // https
	Bucket   string
	Prefix   string // "" or "a/b/" (always ending in "/")
	Region   string
	Lookup   minio.BucketLookupType
	CAFile   string // PEM bundle trusted for https, besides the system roots

	// Retries is how many times a request failing with a transient error
	// (503, SlowDown, 500, timeout, reset connection) is attempted in all.
	Retries int
	// RetryBase and RetryMax bound the randomised exponential back-off.
	RetryBase, RetryMax time.Duration
	// Timeout bounds one attempt of one request.
	Timeout time.Duration
	// Rate limits requests per second (0 = unlimited).
	Rate float64
	// Parallel bounds the requests in flight at once. Set explicitly (the
	// parallel= parameter), it is also the number of chunk workers the
	// repository runs, for stores far away: more requests in flight hide
	// the latency. By default the repository runs 2 per CPU, as locally.
	Parallel    int
	parallelSet bool

	creds *credentials.Credentials
}

// Defaults.
const (
	DefaultRetries  = 10
	DefaultParallel = 32
	DefaultTimeout  = 5 * time.Minute
)

// ParseLocation parses the part of an "s3:" location after the scheme:
// "https://host[:port]/bucket[/prefix][?param=value&...]". Parameters:
// region, lookup (path, dns or auto), ca (a PEM file), retries, timeout (a
// Go duration), rate (requests per second), parallel (requests in
// flight; also the repository's chunk workers when given). AWS_REGION and AWS_CA_BUNDLE apply when region and ca are not
// given. Credentials never come from the location: they are read from
// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), else
// from the shared credentials file (AWS_SHARED_CREDENTIALS_FILE or
// ~/.aws/credentials, profile AWS_PROFILE).
func ParseLocation(rest string) (Config, error) {
	c := Config{Retries: DefaultRetries, RetryBase: 100 * time.Millisecond, RetryMax: 20 * time.Second,
		Timeout: DefaultTimeout, Parallel: DefaultParallel, Lookup: minio.BucketLookupAuto}
	u, err := url.Parse(rest)
	if err != nil {
		return c, fmt.Errorf("s3 location %q: %w", rest, err)
	}
	switch u.Scheme {
	case "https":
		c.Secure = true
	case "http":
	default:
		return c, fmt.Errorf("s3 location %q: want s3:https://host[:port]/bucket[/prefix] (or http://)", rest)
	}
	if u.User != nil {
		return c, errors.New("s3 location: credentials in the location are refused (they would show in process lists and logs): " +
			"set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or use a credentials file")
	}
	if u.Host == "" {
		return c, fmt.Errorf("s3 location %q has no host", rest)
	}
	c.Endpoint = u.Host
	path := strings.Trim(u.Path, "/")
	c.Bucket, c.Prefix, _ = strings.Cut(path, "/")
	if c.Bucket == "" {
		return c, fmt.Errorf("s3 location %q has no bucket: want s3:https://host[:port]/bucket[/prefix]", rest)
	}
	if c.Prefix != "" {
		if strings.Contains(c.Prefix, "//") || strings.Contains(c.Prefix, "..") {
			return c, fmt.Errorf("s3 location %q: prefix %q has an empty or \"..\" segment", rest, c.Prefix)
		}
		c.Prefix += "/"
	}
	c.Region = os.Getenv("AWS_REGION")
	if c.Region == "" {
		c.Region = os.Getenv("AWS_DEFAULT_REGION")
	}
	c.CAFile = os.Getenv("AWS_CA_BUNDLE")
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		if err := c.set(k, v); err != nil {
			return c, fmt.Errorf("s3 location parameter %s=%q: %w", k, v, err)
		}
	}
	return c, nil
}

func (c *Config) set(k, v string) error {
	var err error
	switch k {
	case "region":
		c.Region = v
	case "ca":
		c.CAFile = v
	case "lookup":
		switch v {
		case "path":
			c.Lookup = minio.BucketLookupPath
		case "dns":
			c.Lookup = minio.BucketLookupDNS
		case "auto":
			c.Lookup = minio.BucketLookupAuto
		default:
			return errors.New("want path, dns or auto")
		}
	case "retries":
		c.Retries, err = strconv.Atoi(v)
		if err == nil && c.Retries < 1 {
			err = errors.New("want at least 1")
		}
	case "timeout":
		c.Timeout, err = time.ParseDuration(v)
		if err == nil && c.Timeout <= 0 {
			err = errors.New("want a positive duration")
		}
	case "rate":
		c.Rate, err = strconv.ParseFloat(v, 64)
		if err == nil && c.Rate < 0 {
			err = errors.New("want a number of requests per second, 0 for no limit")
		}
	case "parallel":
		c.parallelSet = true
		c.Parallel, err = strconv.Atoi(v)
		if err == nil && c.Parallel < 1 {
			err = errors.New("want at least 1")
		}
	case "access_key", "secret_key", "access-key", "secret-key", "session_token", "password":
		return errors.New("credentials in the location are refused: use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a credentials file")
	default:
		return errors.New("unknown parameter: known are region, lookup, ca, retries, timeout, rate, parallel")
	}
	return err
}

// credentialsFromEnv is the chain kura accepts: environment variables,
// then the shared credentials file. (No instance-metadata lookup: kura
// never calls an address it was not given.)
func credentialsFromEnv() *credentials.Credentials {
	return credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{},
	})
}

// transport is an HTTP transport for many parallel requests to one host,
// trusting CAFile besides the system roots.
func (c *Config) transport() (*http.Transport, error) {
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   max(c.Parallel, 16),
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   30 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: c.Timeout,
		DisableCompression:    true,
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("s3: read CA bundle: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("s3: CA bundle %s holds no PEM certificate", c.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return tr, nil
}
