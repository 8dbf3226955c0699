// Log in and register. Both end with the token answer stored by api.setSession() and a jump
// to ?next= (the page that asked for a login) or the showtimes.

import { post, setSession } from '../api.js';
import { h, field, busy, pageTitle } from '../ui.js';
import { navigate } from '../app.js';

function next(query) {
  const n = query.get('next');
  // Only a path of this app: never a full URL from the query.
  return n && /^\/[\w/-]*$/.test(n) ? n : '/';
}

function form(root, { title, fields, submit, onSubmit, footer }) {
  pageTitle(root, title);
  const errors = h('div', { class: 'errors' });
  const button = h('button', { class: 'primary', type: 'submit' }, submit);
  const f = h(
    'form',
    { class: 'card narrow', novalidate: true },
    ...fields,
    errors,
    h('div', { class: 'row' }, button),
  );
  f.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(button, errors, onSubmit);
  });
  root.append(f, footer);
  fields[0].querySelector('input').focus();
}

export function renderLogin(root, { query }) {
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'username', required: true });
  const password = h('input', {
    type: 'password',
    name: 'password',
    autocomplete: 'current-password',
    required: true,
  });
  form(root, {
    title: 'Log in',
    fields: [field('Email', email), field('Password', password)],
    submit: 'Log in',
    onSubmit: async () => {
      const answer = await post('/api/auth/login', { email: email.value.trim(), password: password.value });
      setSession(answer);
      navigate(next(query));
    },
    footer: h('p', {}, 'No account yet? ', h('a', { href: '#/register' }, 'Register')),
  });
}

export function renderRegister(root, { query }) {
  const name = h('input', { type: 'text', name: 'name', autocomplete: 'name', required: true, maxlength: 200 });
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'email', required: true });
  const password = h('input', {
    type: 'password',
    name: 'password',
    autocomplete: 'new-password',
    required: true,
    minlength: 8,
    maxlength: 128,
  });
  form(root, {
    title: 'Create an account',
    fields: [
      field('Name', name),
      field('Email', email),
      field('Password', password, 'At least 8 characters.'),
    ],
    submit: 'Register',
    onSubmit: async () => {
      const answer = await post('/api/auth/register', {
        name: name.value.trim(),
        email: email.value.trim(),
        password: password.value,
      });
      setSession(answer);
      navigate(next(query));
    },
    footer: h('p', {}, 'Have an account? ', h('a', { href: '#/login' }, 'Log in')),
  });
}
