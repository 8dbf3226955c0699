// DOM helpers shared by every page. Text from the server always goes in as text nodes (never
// innerHTML), so a movie title cannot inject markup.

import { errorText } from './api.js';

// h('button', {class: 'x', onclick: fn, 'aria-label': 'y'}, 'text', child, [more])
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
    else if (k === 'value' || k === 'checked' || k === 'selected' || k === 'disabled') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

const inr = new Intl.NumberFormat('en-IN', { style: 'currency', currency: 'INR' });
// Minor units (paise) to "₹250.00".
export function money(minor) {
  return inr.format((minor || 0) / 100);
}

// An RFC 3339 time in the viewer's time zone: "Sat 21 Nov, 18:30".
export function when(iso, opts) {
  const d = new Date(iso);
  return d.toLocaleString(
    undefined,
    opts || { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' },
  );
}

export function debounce(fn, ms) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

// A short message at the bottom of the page, read by screen readers.
export function toast(message, kind = 'info', ms = 5000) {
  const box = document.getElementById('toasts');
  const t = h('div', { class: `toast toast-${kind}` }, message);
  box.append(t);
  setTimeout(() => t.remove(), ms);
}

// An error in words, in place (role=alert so it is announced).
export function errorBox(err) {
  return h('div', { class: 'error', role: 'alert' }, typeof err === 'string' ? err : errorText(err));
}

export function showError(container, err) {
  clear(container);
  if (err) container.append(errorBox(err));
}

// A labelled form field: field('Email', h('input', {...})).
export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) input.setAttribute('aria-describedby', hintId);
  return h(
    'div',
    { class: 'field' },
    h('label', { for: id }, label),
    input,
    hint ? h('small', { id: hintId, class: 'muted' }, hint) : null,
  );
}

// Runs an async action from a button: disables it meanwhile, shows errors in `errors`.
export async function busy(button, errors, fn) {
  if (button) button.disabled = true;
  if (errors) clear(errors);
  try {
    return await fn();
  } catch (e) {
    if (errors) errors.append(errorBox(e));
    else toast(errorText(e), 'error');
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

// A modal question; resolves true or false. Uses <dialog>, so focus is trapped and Esc works.
// cancelText names the other choice (default "Cancel").
export function confirmDialog(title, body, okText = 'OK', cancelText = 'Cancel') {
  return new Promise((resolve) => {
    const ok = h('button', { class: 'primary', value: 'ok' }, okText);
    const dlg = h(
      'dialog',
      { 'aria-labelledby': 'dlg-title', class: 'dialog' },
      h(
        'form',
        { method: 'dialog' },
        h('h2', { id: 'dlg-title' }, title),
        typeof body === 'string' ? h('p', {}, body) : body,
        h('div', { class: 'row end' }, h('button', { value: 'cancel' }, cancelText), ok),
      ),
    );
    dlg.addEventListener('close', () => {
      resolve(dlg.returnValue === 'ok');
      dlg.remove();
    });
    document.body.append(dlg);
    dlg.showModal();
    ok.focus();
  });
}

// Sets the document title and moves focus to the page heading (screen readers hear it).
export function pageTitle(root, text) {
  document.title = `${text} · usher`;
  const h1 = h('h1', { tabindex: '-1' }, text);
  root.append(h1);
  return h1;
}

// Turns rows of objects into a CSV file download. columns: [{key, label}].
export function downloadCsv(filename, columns, rows) {
  const cell = (v) => {
    let s = v === null || v === undefined ? '' : String(v);
    // A text cell that a spreadsheet would run as a formula is written as text.
    if (typeof v === 'string' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const lines = [columns.map((c) => cell(c.label || c.key)).join(',')];
  for (const r of rows) lines.push(columns.map((c) => cell(r[c.key])).join(','));
  const blob = new Blob([lines.join('\r\n') + '\r\n'], { type: 'text/csv' });
  const a = h('a', { href: URL.createObjectURL(blob), download: filename });
  document.body.append(a);
  a.click();
  setTimeout(() => {
    URL.revokeObjectURL(a.href);
    a.remove();
  }, 0);
}
