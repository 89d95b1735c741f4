// signin.js - superuser sign-in (or an analyst's, with another auth collection); the token goes
// to localStorage.
import { signIn } from '../api.js';
import { h, clear, errorBox } from '../ui.js';

export const title = 'Sign in';

export function render(view, done) {
  const email = h('input', { type: 'email', name: 'email', required: true, autocomplete: 'username', testid: 'signin-email' });
  const password = h('input', { type: 'password', name: 'password', required: true, autocomplete: 'current-password', testid: 'signin-password' });
  const collection = h('input', { type: 'text', name: 'collection', value: '_superusers', autocomplete: 'off', testid: 'signin-collection' });
  const msg = h('div');
  const button = h('button', { type: 'submit', testid: 'signin-submit' }, 'Sign in');
  const form = h('form', { class: 'signin card', onsubmit: async (ev) => {
    ev.preventDefault();
    button.disabled = true;
    clear(msg);
    try {
      await signIn(email.value, password.value, collection.value.trim() || '_superusers');
      done();
    } catch (e) {
      clear(msg, errorBox(e.status === 400 ? 'Wrong email or password.' : e));
      button.disabled = false;
    }
  } },
  h('h1', {}, 'tandem'),
  h('p', { class: 'muted' }, 'Sign in with a superuser account, or as an analyst with the auth collection the analytics access rule opens.'),
  h('label', { class: 'field' }, h('span', {}, 'Email'), email),
  h('label', { class: 'field' }, h('span', {}, 'Password'), password),
  h('label', { class: 'field' }, h('span', {}, 'Collection'), collection),
  msg, button);
  clear(view, form);
  email.focus();
}
