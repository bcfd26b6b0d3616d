package app_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestSettingsOrgWebhooks: the org page's webhooks section (the same code
// as the user's) adds an endpoint on the org's routes, never the caller's
// own, and re-enables a disabled one.
func TestSettingsOrgWebhooks(t *testing.T) {
	e := webhookEnv(t)
	b := newTab(t)
	rc := newHookReceiver(t)
	tok := e.orgToken("olga", "acme", "", "admin")
	page := e.srv.URL + "/settings/org/#token=" + tok
	b.open(page)
	b.waitFor("the org's webhooks section", `!document.getElementById('webhooks').hidden && document.querySelector('#webhooks form.wh-add') !== null`)
	b.do(chromedp.SendKeys(chromedp.CSS(`#webhooks input[name="url"]`), rc.srv.URL+"/org-hook"),
		chromedp.Click(chromedp.CSS(`#webhooks form.wh-add button[type="submit"]`)))
	b.waitFor("the added endpoint", `document.querySelectorAll('#webhooks li.hook').length === 1 && document.querySelector('#webhooks .secret-note button') !== null`)
	if n, mine := len(b.log.made("POST", "/v1/orgs/acme/webhooks")), len(b.log.made("POST", "/v1/webhooks")); n != 1 || mine != 0 {
		t.Fatalf("POSTs to the org's webhooks %d, to the caller's own %d; want 1, 0", n, mine)
	}
	var list struct {
		Webhooks []struct {
			ID, URL string
			Events  []string
		}
	}
	_ = json.Unmarshal(e.do("GET", "/v1/orgs/acme/webhooks", tok, nil).Body, &list)
	if len(list.Webhooks) != 1 || list.Webhooks[0].URL != rc.srv.URL+"/org-hook" {
		t.Fatalf("org's endpoints after adding on the page: %+v", list.Webhooks)
	}
	// Every event type is offered (and ticked by default), the disabled notice included.
	if got := strings.Join(list.Webhooks[0].Events, ","); got != "byok.key_invalid,byok.key_valid,byok.fallback,byok.quota_warning,byok.webhook_disabled" {
		t.Errorf("events registered from the page: %s", got)
	}
	id := list.Webhooks[0].ID

	// Disabled (as after 3 days of failures): the page offers Re-enable.
	wantStatus(t, e.do("PATCH", "/v1/orgs/acme/webhooks/"+id, tok, map[string]any{"enabled": false}), 200, "")
	b.open(page)
	b.waitFor("the Re-enable button", `document.querySelector('#webhooks li.hook button.reenable') !== null`)
	if got := b.text(`#webhooks li.hook .chip`); got != "Disabled" {
		t.Fatalf("chip of a disabled endpoint = %q", got)
	}
	b.do(chromedp.Click(chromedp.CSS(`#webhooks li.hook button.reenable`)))
	b.waitFor("the endpoint active again", `document.querySelector('#webhooks li.hook .chip').innerText === 'Active' && document.querySelector('#webhooks button.reenable') === null`)
	if r := b.log.made("PATCH", "/v1/orgs/acme/webhooks/"+id); len(r) != 1 {
		t.Fatalf("PATCH made %d times", len(r))
	}
	if r := e.do("GET", "/v1/orgs/acme/webhooks", tok, nil); !strings.Contains(string(r.Body), `"status":"active"`) {
		t.Fatalf("after Re-enable: %s", r.Body)
	}
	b.shot("13-org-webhooks")
	b.checkClean()
	b.assertSecret(tok)
}
