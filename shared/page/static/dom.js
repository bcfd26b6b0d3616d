// Small DOM helpers. Everything from the API goes in as text nodes or
// attributes: the page never parses HTML from strings.
export function el(tag, attrs = {}, ...children) {
  const n = document.createElement(tag);
  setAttrs(n, attrs);
  append(n, children);
  return n;
}

const SVGNS = 'http://www.w3.org/2000/svg';

export function svg(tag, attrs = {}, ...children) {
  const n = document.createElementNS(SVGNS, tag);
  setAttrs(n, attrs);
  append(n, children);
  return n;
}

function setAttrs(n, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') n.setAttribute('class', v);
    else if (k === 'text') n.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') n.addEventListener(k.slice(2), v);
    else n.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(n, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    n.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

let counter = 0;
export const uid = (prefix) => `${prefix}-${++counter}`;

// fieldError shows message (or clears it) next to the input that caused it.
export function fieldError(input, errEl, message) {
  errEl.textContent = message || '';
  errEl.hidden = !message;
  if (input) {
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
}

// announce says msg through the page's polite live region.
export function announce(msg) {
  const live = document.getElementById('live');
  if (!live) return;
  live.textContent = '';
  // A new text node after a tick makes screen readers repeat equal messages.
  setTimeout(() => { live.textContent = msg; }, 30);
}

// confirmAction opens the page's modal dialog and resolves true on confirm.
export function confirmAction(title, text, okLabel) {
  const d = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  const ok = document.getElementById('confirm-ok');
  const cancel = document.getElementById('confirm-cancel');
  ok.textContent = okLabel;
  const opener = document.activeElement;
  return new Promise((resolve) => {
    const done = (v) => {
      ok.removeEventListener('click', onOK);
      cancel.removeEventListener('click', onCancel);
      d.removeEventListener('close', onClose);
      if (d.open) d.close();
      if (opener && opener.isConnected) opener.focus();
      resolve(v);
    };
    const onOK = () => done(true);
    const onCancel = () => done(false);
    // A close event queued by an earlier dialog may arrive after this one
    // opened: only a dialog that is really closed (Escape) answers "no".
    const onClose = () => { if (!d.open) done(false); };
    ok.addEventListener('click', onOK);
    cancel.addEventListener('click', onCancel);
    d.addEventListener('close', onClose);
    d.showModal();
    cancel.focus(); // the safe choice has the focus
  });
}

// busy disables a button while fn runs.
export async function busy(button, fn) {
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await fn();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}
