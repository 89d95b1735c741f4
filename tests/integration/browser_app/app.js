// A small browser app on the unchanged pocketbase SDK: signs in, lists, subscribes to a
// collection and writes a batch, then publishes what it saw on window.__result. The API
// address comes from ?api=... (another origin), or the page's own origin.
(async () => {
  const out = { steps: [] };
  const log = (s) => { out.steps.push(s); document.getElementById('log').textContent += s + '\n'; };
  try {
    const api = new URLSearchParams(location.search).get('api') || location.origin;
    const pb = new PocketBase(api);
    pb.autoCancellation(false);
    await pb.collection('users').authWithPassword('app@example.com', 'passw0rd-app');
    log('signed in as ' + pb.authStore.record.email);
    const list = await pb.collection('notes').getList(1, 50, { sort: 'title' });
    out.listed = list.items.map((r) => r.title);
    log('listed ' + list.totalItems);
    const seen = [];
    await pb.collection('notes').subscribe('*', (e) => seen.push(e.action + ':' + e.record.title));
    log('subscribed');
    window.__subscribed = true;
    while (!window.__go) await new Promise((r) => setTimeout(r, 20)); // the test writes too
    const me = pb.authStore.record.id;
    const batch = pb.createBatch();
    batch.collection('notes').create({ title: 'from-batch-1', owner: me });
    batch.collection('notes').create({ title: 'from-batch-2', owner: me });
    const res = await batch.send();
    out.batch = res.map((r) => r.status);
    log('batch ' + out.batch.join(','));
    const until = Date.now() + 10000;
    while (seen.length < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 300)); // anything more would be a leak
    out.seen = seen.slice().sort();
    await pb.collection('notes').unsubscribe();
    out.origin = location.origin;
    out.api = api;
  } catch (e) {
    out.error = String(e && (e.message || e)) + ' ' + JSON.stringify(e && e.response || {});
  }
  window.__result = out;
})();
