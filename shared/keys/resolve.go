package keys

import "github.com/synthstack/byok/shared/store"

// Candidates returns, in the order a request tries them, the keys that may
// serve model of provider for a caller: the project's keys, then the org's,
// then (unless the org forbids personal keys) the caller's own; each scope
// in its stored order (priority, then oldest). Invalid keys and keys whose
// model filter does not admit model are left out; the caller still skips
// keys whose circuit is open. org is nil when the token names no org.
func Candidates(u store.User, org *store.Org, provider, model string) []store.KeyRecord {
	var buf [3]store.KeySet // at most project, org and own: no allocation
	sets := buf[:0]
	if org != nil {
		sets = append(sets, org.Project, org.Keys)
		if org.Settings.PersonalKeys {
			sets = append(sets, u.Set)
		}
	} else {
		sets = append(sets, u.Set)
	}
	var out []store.KeyRecord
	for _, s := range sets {
		for _, k := range s.Keys[provider] {
			if k.Status != "invalid" && ModelAllowed(k.Models, model) {
				out = append(out, k)
			}
		}
	}
	return out
}
