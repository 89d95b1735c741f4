// PocketBase SDK helpers: a server with a superuser, and an SDK client signed in as it.
import PocketBase from 'pocketbase';
import { run, start, tempDir } from './server.mjs';

export const SU_EMAIL = 'root@example.com';
export const SU_PASSWORD = 'correct horse battery';

export async function createSuperuser(dir, email = SU_EMAIL, password = SU_PASSWORD) {
  const r = await run(['superuser', 'upsert', email, password, '--dir', dir]);
  if (r.code !== 0) throw new Error(`superuser upsert failed (${r.code}): ${r.stderr}`);
  return r;
}

export function client(url) {
  const pb = new PocketBase(url);
  pb.autoCancellation(false);
  return pb;
}

// Starts a server whose data directory has a superuser; returns {srv, pb} with pb signed in.
export async function startWithSuperuser(opts = {}) {
  const dir = opts.dir || tempDir();
  await createSuperuser(dir);
  const srv = await start({ ...opts, dir });
  const pb = client(srv.url);
  await pb.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
  return { srv, pb, dir };
}

// Like startWithSuperuser, with a write key named "web" made first; adds {key, token}.
export async function startWithSuperuserAndKey(opts = {}) {
  const dir = opts.dir || tempDir();
  const r = await run(['writekey', 'create', 'web', '--dir', dir]);
  if (r.code !== 0) throw new Error(`writekey create failed (${r.code}): ${r.stderr}`);
  const started = await startWithSuperuser({ ...opts, dir });
  return { ...started, key: r.stdout.trim(), token: started.pb.authStore.token };
}

// Asserts that fn rejects with a ClientResponseError of the given status; returns the error.
export async function expectStatus(promise, status) {
  try {
    await promise;
  } catch (e) {
    if (e?.status !== status) throw new Error(`expected ${status}, got ${e?.status}: ${JSON.stringify(e?.response)}`);
    return e;
  }
  throw new Error(`expected ${status}, but the request succeeded`);
}
