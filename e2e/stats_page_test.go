package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"
)

// browser starts headless Chromium (Debian's chromium; as root it needs
// --no-sandbox) and returns a context that drives it.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := lookTool(t, "chromium", "apt-get install chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1100, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return ctx
}

// pageEval evaluates js in the page until it returns want, or fails the
// test after d.
func pageEval(t *testing.T, ctx context.Context, d time.Duration, js, want string) {
	t.Helper()
	for end := time.Now().Add(d); ; {
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err == nil && got == want {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%s: got %q (err %v), want %q after %v", js, got, err, want, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestStatsPage opens the stats page in a real browser: it shows every
// frontend, backend and server; a server whose check starts failing turns
// down on the page by itself; the graphs draw; an action (drain) from the
// page, behind basic authentication, changes the server.
func TestStatsPage(t *testing.T) {
	a, b := startChecked(t, "a"), startChecked(t, "b")
	d := newDaemons(t, "")
	statsPort := freePort(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	d.writeConfig(healthConfig(d, "", "", a, b) + statsTable(statsPort,
		fmt.Sprintf("history_step = \"200ms\"\nuser = \"ops\"\npassword_hash = %q\nadmin = true", hash)))
	d.mustLaunch()
	waitPort(t, d.port)
	waitPort(t, statsPort)
	for range 20 {
		whoAnswers(t, d.addr(), "")
	}
	page := fmt.Sprintf("http://127.0.0.1:%d/", statsPort)

	// Without the password: 401, page and all.
	resp, err := http.Get(page)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("the page without a password: %d, want 401", resp.StatusCode)
	}

	ctx := browser(t)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:pw"))
	if err := chromedp.Do(ctx,
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
				return err
			}
			_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}})
			return err
		}),
		chromedp.Navigate(page),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-server="b"]`)),
	); err != nil {
		t.Fatalf("open %s: %v", page, err)
	}
	badge := func(server string) string {
		return fmt.Sprintf(`document.querySelector('tr[data-server=%q] .badge').textContent`, server)
	}
	pageEval(t, ctx, 10*time.Second, `document.querySelector('tr[data-frontend="web"]') !== null && document.querySelector('[data-backend="app"]') !== null ? "ok" : "missing"`, "ok")
	pageEval(t, ctx, 10*time.Second, badge("a"), "up")
	pageEval(t, ctx, 10*time.Second, badge("b"), "up")

	// b's check fails: the page shows it going down without a reload.
	b.checkDown()
	pageEval(t, ctx, 15*time.Second, `(() => { const r = document.querySelector('tr[data-server="b"]'); return r.className + " " + r.querySelector('.check').textContent.includes("since") })()`, "down true")
	pageEval(t, ctx, 5*time.Second, badge("a"), "up")

	// The graphs draw the backend's points.
	pageEval(t, ctx, 20*time.Second, `[...document.querySelectorAll('[data-backend="app"] canvas')].map(c => +(c.dataset.points || 0) > 1).join()`, "true,true,true")

	// An action from the page.
	// Clicked from within the page: it redraws its tables every 2 s, so a
	// node found by one DevTools call may be gone by the next.
	pageEval(t, ctx, 10*time.Second, `(() => { const b = document.querySelector('tr[data-server="a"] .actions button:nth-of-type(2)'); if (!b || b.textContent !== "drain") return "no drain button"; b.click(); return "clicked" })()`, "clicked")
	pageEval(t, ctx, 10*time.Second, badge("a"), "drain")
	if f := serverState(t, d, "a"); f[4] != "drain" {
		t.Fatalf("after the page's drain, show servers state says %v", f)
	}
	if !strings.Contains(d.log(), `"stats page action"`) {
		t.Errorf("the action is not in the log")
	}

	// When b went down survives a reload.
	changed := func() float64 {
		t.Helper()
		req, _ := http.NewRequest("GET", page+"stats.json", nil)
		req.SetBasicAuth("ops", "pw")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var doc struct {
			Servers []struct {
				Server string `json:"server"`
				State  struct {
					Changed float64 `json:"changed"`
				} `json:"state"`
			} `json:"servers"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
			t.Fatal(err)
		}
		for _, sv := range doc.Servers {
			if sv.Server == "b" {
				return sv.State.Changed
			}
		}
		t.Fatal("no server b in stats.json")
		return 0
	}
	before := changed()
	d.mustLaunch()
	if after := changed(); before == 0 || after != before {
		t.Errorf("b went down at %v; after a reload, stats.json says %v", before, after)
	}

	// On a phone's screen, the page itself does not scroll sideways: wide
	// tables scroll within their box.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(3))); err != nil {
		t.Fatal(err)
	}
	pageEval(t, ctx, 10*time.Second, `document.querySelector('tr[data-server="a"]') !== null && document.documentElement.scrollWidth <= window.innerWidth ? "fits" : "wider: " + document.documentElement.scrollWidth + " > " + window.innerWidth`, "fits")

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(90))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(t.TempDir(), "stats.png"), shot, 0o644); err != nil {
		t.Fatal(err)
	}
}
