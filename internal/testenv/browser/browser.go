// Package browser runs a real headless Chromium (Debian's chromium) for
// tests of kura's web console, driven through the DevTools protocol by
// chromedp. Tests only: it fails under KURA_TEST_STRICT=1 when chromium
// is missing. Screenshots go to $KURA_ARTIFACTS/<test>/ when set, else to
// a temporary directory of the test.
package browser

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/kurabackup/kura/internal/testenv"
)

// Browser is one headless Chromium with one tab.
type Browser struct {
	t         testing.TB
	ctx       context.Context
	Artifacts string // where screenshots are written
	// Timeout bounds each step (30 s).
	Timeout   time.Duration
	downloads string

	mu     sync.Mutex
	errs   []string          // uncaught exceptions and console.error calls of the page
	done   map[string]string // finished downloads: guid → the name the server suggested
	names  map[string]string
	failed bool
}

// New starts Chromium with a window of width × height pixels. Page
// errors (uncaught exceptions, console.error) fail the test at its end.
func New(t testing.TB, width, height int) *Browser {
	t.Helper()
	exe := testenv.NeedTool(t, "chromium")
	art := filepath.Join(t.TempDir(), "screenshots")
	if d := os.Getenv("KURA_ARTIFACTS"); d != "" {
		art = filepath.Join(d, strings.ReplaceAll(t.Name(), "/", "_"))
	}
	if err := os.MkdirAll(art, 0o755); err != nil {
		t.Fatal(err)
	}
	b := &Browser{t: t, Artifacts: art, Timeout: 30 * time.Second, downloads: t.TempDir(), done: map[string]string{}, names: map[string]string{}}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.IgnoreCertErrors, chromedp.WindowSize(width, height),
		chromedp.UserDataDir(t.TempDir()), chromedp.Flag("lang", "en-US"))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b.ctx = ctx
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, e := range b.errs {
			t.Errorf("page error: %s", e)
		}
	})
	// The first run starts the browser, tied to the context it is given:
	// the tab's own, never one with a timeout.
	if err := chromedp.Do(ctx, chromedp.Func(func(context.Context, *chromedp.Target) error { return nil })); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.IsException() || (m.Type == chromedp.ConsoleError && m.Source == "") {
				b.mu.Lock()
				b.errs = append(b.errs, m.String())
				b.mu.Unlock()
			} else if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning {
				t.Logf("browser console: %s %s", m, m.URL)
			}
		}
	}()
	if err := chromedp.ListenBrowser(ctx, b.onBrowserEvent); err != nil {
		t.Fatal(err)
	}
	on := true
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: b.downloads, EventsEnabled: &on}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *Browser) onBrowserEvent(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *browser.EventDownloadWillBegin:
		b.names[ev.GUID] = ev.SuggestedFilename
	case *browser.EventDownloadProgress:
		switch ev.State {
		case browser.DownloadProgressStateCompleted:
			b.done[ev.GUID] = b.names[ev.GUID]
		case browser.DownloadProgressStateCanceled:
			b.failed = true
		}
	}
}

// Context is the tab's context, for chromedp calls of a test's own.
func (b *Browser) Context() context.Context { return b.ctx }

// Do runs steps, failing the test (with a screenshot) on error.
func (b *Browser) Do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, b.Timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.Screenshot("failure")
		b.t.Fatalf("browser: %v", err)
	}
}

// Run runs one action and returns its value, failing the test on error.
func Run[T any](b *Browser, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, b.Timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.Screenshot("failure")
		b.t.Fatalf("browser: %v", err)
	}
	return v
}

// Screenshot writes the whole page as name.png into Artifacts.
func (b *Browser) Screenshot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, b.Timeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	p := filepath.Join(b.Artifacts, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	return p
}

// Text returns the text of the first node matching the CSS selector sel,
// once it is visible.
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	b.Do(chromedp.WaitVisible(chromedp.CSS(sel)))
	return Run(b, chromedp.Text(chromedp.CSS(sel)))
}

// WaitText waits until the text of the node sel contains want.
func (b *Browser) WaitText(sel, want string) {
	b.t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && e.textContent.includes(%q); })()`, sel, want)
	Run(b, chromedp.Poll[bool](js, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(b.Timeout)))
}

// Page opens url and waits until the console drew the page titled title.
func (b *Browser) Page(url, title string) {
	b.t.Helper()
	b.Do(chromedp.Navigate(url), b.Ready(title))
}

// Go changes the console's route (the part after #) and waits for the
// page titled title.
func (b *Browser) Go(hash, title string) {
	b.t.Helper()
	js := fmt.Sprintf(`delete document.documentElement.dataset.ready;
		if (location.hash === %[1]q) window.dispatchEvent(new HashChangeEvent('hashchange')); else location.hash = %[1]q`, hash)
	b.Do(chromedp.Evaluate[chromedp.Void](js), b.Ready(title))
}

// Ready waits for the console to finish drawing the page titled title.
func (b *Browser) Ready(title string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitReady(chromedp.CSS(fmt.Sprintf(`html[data-ready=%q]`, title)))
}

// Download runs the steps (a click on a link) and waits for the file they
// download; it returns its path and the name the server suggested.
func (b *Browser) Download(steps ...chromedp.Action[chromedp.Void]) (path, name string) {
	b.t.Helper()
	b.Do(steps...)
	deadline := time.Now().Add(b.Timeout)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		if b.failed {
			b.mu.Unlock()
			b.t.Fatal("download cancelled")
		}
		for guid, n := range b.done {
			delete(b.done, guid)
			b.mu.Unlock()
			return filepath.Join(b.downloads, guid), n
		}
		b.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	b.t.Fatal("no download finished")
	return "", ""
}

// SetValue sets the value of the input or select sel, as typing would
// (an input event follows).
func (b *Browser) SetValue(sel, value string) {
	b.t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false; e.value = %q;
		e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true})); return true; })()`, sel, value)
	if !Run(b, chromedp.Evaluate[bool](js)) {
		b.t.Fatalf("no element %s", sel)
	}
}
