// Analyst access (docs/governance.md "Analyst access"): settings.analytics.accessRule opens the
// insights and the warehouse SQL API to the auth records it holds for; analysts read events,
// the mirrors of non-auth collections (which never hold hidden fields) and models, and nothing
// else, whatever the SQL does to reach it; others get 403, guests 401; superusers keep all.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { api, waitLoaded } from './lib/models.mjs';
import { client, expectStatus, startWithSuperuser } from './lib/pb.mjs';

const RULE = "@request.auth.collectionName = 'staff' && @request.auth.role = 'analyst'";
const TRENDS = { series: [{ event: 'signup' }], dateFrom: '-7d' };

test('analysts: insights and SQL on what they may see, refused the rest', async () => {
  const { srv, pb } = await startWithSuperuser();
  try {
    const su = { url: srv.url, token: pb.authStore.token };
    await pb.collections.create({
      name: 'staff', type: 'auth', fields: [{ name: 'role', type: 'text' }],
      passwordAuth: { enabled: true, identityFields: ['email'] },
    });
    await pb.collections.create({
      name: 'notes', type: 'base', listRule: '', viewRule: '',
      fields: [{ name: 'title', type: 'text' }, { name: 'secret', type: 'text', hidden: true }],
    });
    await pb.collection('notes').create({ title: 'hello', secret: 'the-hidden-value' });
    const pw = 'analyst password 1';
    await pb.collection('staff').create({ email: 'ana@example.com', password: pw, passwordConfirm: pw, role: 'analyst' });
    await pb.collection('staff').create({ email: 'vic@example.com', password: pw, passwordConfirm: pw, role: 'viewer' });
    await pb.collection('users').create({ email: 'ursula@example.com', password: pw, passwordConfirm: pw });
    await waitLoaded(su, 'SELECT count(*) FROM app_notes', 1);
    await waitLoaded(su, 'SELECT count(*) FROM app_staff', 2);

    const sign = async (coll, email) => {
      const c = client(srv.url);
      await c.collection(coll).authWithPassword(email, pw);
      return { url: srv.url, token: c.authStore.token };
    };
    const ana = await sign('staff', 'ana@example.com');
    const vic = await sign('staff', 'vic@example.com');
    const urs = await sign('users', 'ursula@example.com');
    const guest = { url: srv.url };

    // superusers only by default
    assert.equal((await api(ana, 'POST', '/api/warehouse/sql', { query: 'SELECT 1' })).status, 403);
    assert.equal((await api(ana, 'POST', '/api/insights/trends', TRENDS)).status, 403);

    // a bad rule is refused, naming the field
    const bad = await expectStatus(pb.settings.update({ analytics: { accessRule: "@request.auth.role = = 'x'" } }), 400);
    assert.equal(bad.response.data.analytics.accessRule.code, 'validation_invalid_rule');
    const s = await pb.settings.update({ analytics: { accessRule: RULE } });
    assert.equal(s.analytics.accessRule, RULE);

    const q = (who, query) => api(who, 'POST', '/api/warehouse/sql', { query });
    // the analyst may
    let r = await q(ana, 'SELECT count(*) AS n FROM events');
    assert.equal(r.status, 200, r.text);
    r = await q(ana, 'SELECT title FROM app_notes');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.rows, [['hello']]);
    r = await q(ana, 'SELECT * FROM app_notes');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text.includes('the-hidden-value'), false);
    assert.equal(r.json.columns.some((c) => c.name === 'secret'), false);
    r = await q(ana, 'WITH x AS (SELECT title FROM main.app_notes) SELECT * FROM x, (SELECT count(*) FROM "EVENTS") e');
    assert.equal(r.status, 200, r.text);
    r = await api(ana, 'POST', '/api/insights/trends', TRENDS);
    assert.equal(r.status, 200, r.text);

    // and may not: system tables, auth mirrors, changes, audit, hidden columns, by any road
    const refused = [
      'SELECT * FROM _offsets',
      'SELECT no_such_column FROM _offsets', // refused before binding: no column names leak
      'SELECT * FROM "_OFFSETS"',
      'SELECT * FROM main._offsets',
      'SELECT * FROM warehouse.main._offsets',
      'FROM _rejects',
      'WITH x AS (SELECT * FROM _offsets) SELECT * FROM x',
      'WITH app_notes AS (SELECT * FROM app_users) SELECT * FROM app_notes',
      'SELECT * FROM events WHERE id IN (SELECT consumer FROM _offsets)',
      'SELECT (SELECT max(email) FROM app_staff)',
      'SELECT * FROM app_users',
      'SELECT * FROM app_staff',
      'SELECT * FROM app_notes JOIN app_staff USING (id)',
      'SELECT * FROM changes',
      "SELECT record->>'secret' FROM changes",
      'SELECT * FROM audit',
      "SELECT * FROM read_csv('/etc/passwd')",
      'SELECT * FROM duckdb_tables()',
      'SELECT * FROM duckdb_tables',
      'SELECT * FROM duckdb_columns()',
      'SELECT * FROM information_schema.tables',
      'SELECT * FROM information_schema.columns',
      'SELECT * FROM pg_catalog.pg_class',
      'SELECT * FROM sqlite_master',
      'DESCRIBE _offsets',
      'SUMMARIZE app_staff',
      "PRAGMA table_info('_offsets')",
    ];
    for (const sql of refused) {
      r = await q(ana, sql);
      assert.equal(r.status, 403, `${sql}: ${r.status} ${r.text}`);
    }
    // a hidden field is no column of the mirror at all
    r = await q(ana, 'SELECT secret FROM app_notes');
    assert.equal(r.status, 400, r.text);
    assert.equal(r.text.includes('the-hidden-value'), false);

    // not an analyst: 403; a guest: 401
    for (const who of [vic, urs]) {
      assert.equal((await q(who, 'SELECT 1')).status, 403);
      assert.equal((await api(who, 'POST', '/api/insights/trends', TRENDS)).status, 403);
    }
    assert.equal((await q(guest, 'SELECT 1')).status, 401);
    assert.equal((await api(guest, 'POST', '/api/insights/trends', TRENDS)).status, 401);

    // superusers keep their full (read-only) access
    r = await q(su, 'SELECT count(*) FROM _offsets');
    assert.equal(r.status, 200, r.text);
    r = await q(su, "SELECT count(*) FROM changes WHERE record->>'secret' = 'the-hidden-value'");
    assert.equal(r.status, 200, r.text);

    // null switches it off again
    await pb.settings.update({ analytics: { accessRule: null } });
    assert.equal((await q(ana, 'SELECT 1')).status, 403);
  } finally {
    await srv.stop();
  }
});
