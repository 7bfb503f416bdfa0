// Package notifytest runs real peers for notification tests: a private
// exim4 daemon (STARTTLS, implicit TLS and plain ports, AUTH PLAIN/LOGIN
// over TLS, delivery to a maildir the test reads) and an HTTP webhook
// receiver that checks signatures and can fail or hold requests.
//
// It takes the exim4 path from the caller (testenv.NeedTool(t, "exim4")),
// so that a missing exim fails tests under KURA_TEST_STRICT=1.
package notifytest
