// Words for the API's codes, and number and date formats.
const PROVIDERS = {
  openai: 'OpenAI',
  anthropic: 'Anthropic',
  google: 'Google Gemini',
  mistral: 'Mistral',
  cohere: 'Cohere',
  azure_openai: 'Azure OpenAI',
};

export const providerName = (p) => PROVIDERS[p] || p;

const PLACEHOLDERS = { openai: 'sk-...', anthropic: 'sk-ant-...', google: 'AIza...' };
export const keyPlaceholder = (p) => PLACEHOLDERS[p] || '';

// Every reason code the API gives a key status, in words: what happened and
// what to do.
export const REASONS = {
  unauthorized: 'The provider rejected this key: it is wrong, revoked or expired. Create a new key in the provider\'s dashboard and save it here.',
  no_billing: 'The provider account behind this key has no billing set up. Add a payment method with the provider, then press Test.',
  quota_exceeded: 'The provider account behind this key has used up its quota or credit. Raise the limit or add credit with the provider, then press Test.',
  forbidden: 'The provider refused this key for this use (for example the API is not enabled, or the region or IP address is not allowed). Check the key\'s permissions with the provider.',
  deployment_not_found: 'A deployment saved with this key does not exist on your Azure resource. Check the deployment names in the Azure portal and save the key again.',
  endpoint_refused: 'The Azure endpoint was refused before anything was sent: its host is not allowed here or it resolves to a private address. Use your resource\'s public https://<resource>.openai.azure.com address.',
  invalid_format: 'This does not look like a key of this provider. Copy the whole key from the provider\'s dashboard.',
  provider_unreachable: 'The provider could not be reached when we checked: the network failed, not the key. We check again daily; press Test to try now.',
  provider_unavailable: 'The provider had an outage when we checked, so the key was not judged. Press Test to try again later.',
  timeout: 'The provider did not answer in time, so the key was not judged. Press Test to try again.',
  rate_limited: 'The provider rate-limited our check, so the key was not judged. Press Test again in a minute.',
  request_error: 'The provider refused our check request itself; this is not a problem with the key. Press Test to try again.',
  unexpected_status: 'The provider gave an answer we do not understand, so the key was not judged. Press Test to try again.',
  canceled: 'The check was cancelled before it finished. Press Test to try again.',
  unsupported_provider: 'This provider is not supported by this server.',
};

export function reasonText(code) {
  if (!code) return '';
  return REASONS[code] || `The provider reported "${code}".`;
}

export const STATUS = {
  valid: { label: 'Valid', glyph: '✓', cls: 'chip-valid' },
  invalid: { label: 'Invalid', glyph: '✕', cls: 'chip-invalid' },
  unchecked: { label: 'Unchecked', glyph: '?', cls: 'chip-unchecked' },
};

export const MODES = {
  byok_first: 'BYOK first: your keys, then credits if they fail',
  credit_first: 'Credits first: credits while the balance lasts, then your keys',
  byok_only: 'BYOK only: your keys only, never the platform\'s',
};

export function fmtTime(iso) {
  if (!iso) return 'never';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return 'unknown';
  return d.toLocaleString('en-GB', { dateStyle: 'medium', timeStyle: 'short', timeZone: 'UTC' }) + ' UTC';
}

export const fmtInt = (n) => Number(n || 0).toLocaleString('en-US');

export function fmtUSD(v) {
  const n = Number(v || 0);
  return '$' + n.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: n !== 0 && Math.abs(n) < 0.01 ? 6 : 2 });
}
