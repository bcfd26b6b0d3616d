// The routing banner: which route the user's requests take, and why.
import { el } from './dom.js';
import { MODES } from './format.js';

const BANNERS = {
  byok: { icon: '🔵', text: 'Using Your API Keys (BYOK)', cls: 'banner-byok' },
  credits: { icon: '🟢', text: 'Using Internal Credits', cls: 'banner-credits' },
  action_required: { icon: '🔴', text: 'Action Required', cls: 'banner-action' },
};

const TIERS = { free: 'Free', starter: 'Starter', premium: 'Premium', lifetime: 'Lifetime' };

// reasons explains the banner in sentences.
export function bannerReasons(r) {
  const out = [];
  // In byok_only the platform's keys are never used, so there is no "instead".
  const credits = r.mode === 'byok_only' ? '.' : '; requests use internal credits.';
  if (!r.byok_enabled) {
    out.push('BYOK is turned off by the platform\'s administrator, so your own keys are not used' + credits);
  } else if (!r.byok_eligible) {
    out.push(`Your plan (${TIERS[r.tier] || r.tier || 'unknown'}) does not include BYOK; it comes with the Premium and Lifetime plans, so your own keys are not used` + credits);
  }
  if (r.banner === 'action_required') {
    if (r.mode === 'byok_only') {
      out.push('The routing mode is BYOK only and none of your keys can be used: save a valid key below.');
    } else {
      out.push('No key of yours can be used and you have no credits left: save a valid key below, or add credits.');
    }
  } else if (r.banner === 'credits' && r.byok_eligible) {
    out.push(r.mode === 'credit_first'
      ? 'The routing mode is credits first: credits are used while your balance lasts, then your keys.'
      : 'You have no usable key: save a valid key below to use your own.');
  }
  return out;
}

export function renderBanner(node, r) {
  const b = BANNERS[r.banner] || BANNERS.action_required;
  node.className = 'banner ' + b.cls;
  node.dataset.banner = r.banner || '';
  node.replaceChildren(
    el('p', { class: 'banner-title' }, el('span', { 'aria-hidden': 'true' }, b.icon + ' '), b.text),
    ...bannerReasons(r).map((t) => el('p', { class: 'banner-why' }, t)),
    el('p', { class: 'banner-mode' }, 'Routing mode: ', MODES[r.mode] || r.mode || 'unknown', '.'),
  );
}
