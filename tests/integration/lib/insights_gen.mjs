// A seeded generator of realistic product events for the insights tests: anonymous visitors
// with sessions of pageviews, identify merging anonymous history into a user, alias events, a
// signup -> activate -> purchase funnel with drop-off and long delays, re-attempted signups,
// cancels, returning and churning users over ten weeks of spring 2024 (across the US and EU DST
// changes) and a few weeks of autumn 2024 (the fall-back days), in several time zones.
//
// generate({seed, users}) returns canonical event records (docs/capture.md) sorted by time, each
// with the write key name in `source`; toSegment() turns one into the Segment message that makes
// capture store exactly that record (explicit timestamp and messageId, no sentAt, so the stored
// timestamp is the generated one). The same seed always gives the same events.

export function prng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const r = {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (arr) => arr[Math.floor(next() * arr.length)],
    chance: (p) => next() < p,
    expo: (mean) => -Math.log(1 - next()) * mean,
    weighted: (pairs) => {
      const total = pairs.reduce((s, [, w]) => s + w, 0);
      let x = next() * total;
      for (const [v, w] of pairs) if ((x -= w) < 0) return v;
      return pairs[pairs.length - 1][0];
    },
  };
  return r;
}

const MIN = 60000;
const HOUR = 3600000;
const DAY = 86400000;

export const SPRING_START = Date.UTC(2024, 1, 19); // Monday 2024-02-19
export const SPRING_END = Date.UTC(2024, 3, 29); // ten weeks later
export const AUTUMN_START = Date.UTC(2024, 9, 21);
export const AUTUMN_END = Date.UTC(2024, 10, 11);

// zone, standard offset in hours (sessions are placed at local daytime by it; DST shifts them by
// an hour, as real people do not), countries, locale
const ZONES = [
  ['America/New_York', -5, ['US', 'US', 'US', 'CA'], 'en-US', 35],
  ['Europe/Berlin', 1, ['DE', 'DE', 'AT', 'CH', 'FR', 'NL', 'PL'], 'de-DE', 28],
  ['America/Los_Angeles', -8, ['US', 'US', 'MX'], 'en-US', 10],
  ['Europe/London', 0, ['GB', 'GB', 'IE'], 'en-GB', 8],
  ['Asia/Tokyo', 9, ['JP', 'JP', 'KR'], 'ja-JP', 8],
  ['UTC', 0, ['BR', 'IN', 'ZA', 'AU', 'NG', 'EG', 'AR', 'SE', 'NO', 'FI', 'DK', 'ES', 'IT', 'PT', 'BE', 'CZ', 'HU', 'RO', 'TR', 'IL', 'SG', 'NZ', 'CL', 'CO', 'PE', 'VN', 'TH'], 'en', 11],
];
// more than 25 campaign sources with a long tail, so that breakdowns have an "other" row
const UTM = [
  ['google', 30], ['direct', 20], ['newsletter', 9], ['twitter', 7], ['linkedin', 6], ['reddit', 5], ['hn', 4],
  ...Array.from({ length: 36 }, (_, i) => [`partner-${String(i + 1).padStart(2, '0')}`, 36 - i > 20 ? 2 : 1]),
];
const PATHS = ['/', '/pricing', '/docs', '/docs/start', '/blog', '/blog/launch', '/features', '/app', '/app/settings', '/app/reports'];
const OS = ['Mac OS X', 'Windows', 'iOS', 'Android', 'Linux'];
const PLANS = ['basic', 'pro', 'team', 'enterprise'];

export function generate({ seed = 7, users = 300, prefix = '' } = {}) {
  const rnd = prng(seed);
  const out = [];
  const used = new Set();
  let serial = 0;
  let sessions = 0;
  const stamp = (t) => {
    t = Math.round(t);
    while (used.has(t)) t += 1; // never two events at the same millisecond
    used.add(t);
    return t;
  };
  const emit = (u, fields, t) => {
    const ts = stamp(t);
    out.push({
      messageId: `${prefix}g${seed}-${serial++}`,
      type: 'track',
      event: null,
      userId: null,
      anonymousId: null,
      previousId: null,
      timestamp: new Date(ts).toISOString(),
      properties: {},
      traits: {},
      context: u.context,
      source: 'web',
      ...fields,
    });
    return ts;
  };

  // a random local daytime instant on the UTC day of t for user u
  const daytime = (u, t) => {
    const day = Math.floor(t / DAY) * DAY;
    const h = rnd.weighted([[8, 2], [9, 3], [10, 4], [11, 4], [12, 3], [13, 4], [14, 4], [15, 4], [16, 3], [17, 3], [18, 2], [19, 2], [20, 2], [21, 2], [22, 1], [23, 1], [0, 0.5], [1, 0.3]]);
    return day + h * HOUR - u.std * HOUR + rnd.int(0, 59) * MIN + rnd.int(0, 59999);
  };

  // who the events of u are sent as right now
  const ids = (u, server = false) => {
    if (server) return { userId: u.userId };
    if (!u.userId || !u.loggedIn) return { anonymousId: u.anon };
    if (u.userOnly) return { userId: u.userId };
    return { userId: u.userId, anonymousId: u.anon };
  };

  const session = (u, t, { n = rnd.int(1, 8), marketing = !u.userId } = {}) => {
    let tt = t;
    const utm = rnd.chance(0.8) ? rnd.weighted(UTM) : undefined;
    const sessionId = `${prefix}s${seed}-${sessions++}`;
    for (let i = 0; i < n; i++) {
      const path = rnd.pick(PATHS);
      const props = { session_id: sessionId, path, referrer: i === 0 ? rnd.pick(['https://google.com/', 'https://news.ycombinator.com/', '', null]) : 'internal' };
      if (utm !== undefined) props.utm_source = utm;
      if (marketing && rnd.chance(0.5)) {
        emit(u, { type: 'page', properties: { ...props, name: path === '/' ? 'Home' : path.slice(1) }, ...ids(u) }, tt);
      } else {
        emit(u, { event: 'pageview', properties: props, ...ids(u) }, tt);
      }
      if (rnd.chance(0.15)) emit(u, { event: 'search', properties: { query: rnd.pick(['Pricing', 'export CSV', 'SSO', 'api keys', 'Funnels']), results: rnd.int(0, 40) }, ...ids(u) }, (tt += rnd.int(2000, 60000)));
      tt += rnd.int(3000, 240000);
    }
    return tt;
  };

  const purchase = (u, t) => {
    const amount = rnd.weighted([
      [() => Math.round(rnd.int(500, 30000)) / 100, 55], [() => rnd.pick([9, 19, 49, 99, 199]), 15],
      [() => undefined, 10], [() => null, 8], [() => String(rnd.int(10, 90)) + '.5', 6], [() => 'free', 6],
    ])();
    const plan = rnd.weighted([[u.plan, 70], [rnd.pick(PLANS), 10], [undefined, 10], [null, 5], ['', 5]]);
    const props = { quantity: rnd.int(1, 5), coupon: rnd.chance(0.2) ? 'SPRING10' : null, currency: 'USD' };
    // arrays and objects: their text form is their JSON text
    if (rnd.chance(0.6)) props.items = Array.from({ length: rnd.int(1, 2) }, () => ({ sku: rnd.pick(['A-1', 'B-2', 'C-3']), price: rnd.pick([9.99, 20, 0.5]) }));
    if (rnd.chance(0.3)) props.flags = { trial: rnd.chance(0.5), seats: rnd.int(1, 3) };
    if (amount !== undefined) props.amount = amount;
    if (plan !== undefined) props.plan = plan;
    if (rnd.chance(0.92)) props.country = u.country;
    const server = rnd.chance(0.5);
    return emit(u, { event: 'purchase', properties: props, source: server ? 'backend' : 'web', ...ids(u, server) }, t);
  };

  const people = [];
  for (let i = 0; i < users; i++) {
    const [tz, std, countries, locale] = rnd.weighted(ZONES.map((z) => [z, z[4]]));
    const country = rnd.pick(countries);
    const kind = rnd.weighted([['visitor', 35], ['churner', 30], ['returning', 35]]);
    const u = {
      i, tz, std, country, kind,
      anon: `${prefix}anon-${seed}-${i}`,
      userId: null,
      loggedIn: false,
      userOnly: false,
      plan: rnd.pick(PLANS),
      context: { library: { name: 'insights-gen', version: '1.0.0' }, timezone: tz, locale, os: { name: rnd.pick(OS) } },
    };
    people.push(u);
  }

  for (const u of people) {
    const arrival = SPRING_START + Math.floor(rnd.next() * rnd.next() * 56) * DAY; // front-loaded
    const lastDay = u.kind === 'churner' ? arrival + rnd.int(5, 25) * DAY : u.kind === 'returning' ? SPRING_END : arrival + rnd.int(0, 3) * DAY;
    const uid = `${prefix}user-${seed}-${u.i}`;

    // some accounts existed before the data starts, under a legacy id aliased later
    const legacy = u.kind !== 'visitor' && rnd.chance(0.06) ? `${prefix}legacy-${seed}-${u.i}` : null;
    if (legacy) {
      const lu = { ...u, userId: legacy, loggedIn: true, userOnly: true };
      for (let d = rnd.int(20, 40); d > 10; d -= rnd.int(2, 9)) session(lu, daytime(u, SPRING_START - d * DAY), { marketing: false });
    }

    let t = session(u, daytime(u, arrival));
    if (u.kind === 'visitor') {
      for (let d = arrival + DAY; d <= lastDay; d += DAY) if (rnd.chance(0.4)) session(u, daytime(u, d));
      continue;
    }

    // signup, maybe after a failed first attempt days earlier
    let signupAt = t + rnd.int(30000, 600000);
    if (rnd.chance(0.12)) {
      emit(u, { event: 'signup', properties: { method: rnd.pick(['email', 'google']), success: false, plan: 'free' }, ...ids(u) }, signupAt);
      signupAt += rnd.int(1, 9) * DAY + rnd.int(0, 3600000);
      session(u, signupAt - rnd.int(600000, 1200000), { n: rnd.int(1, 3) });
    }
    u.userId = uid;
    if (rnd.chance(0.07)) {
      // alias instead of identify; events after it carry the user id only
      emit(u, { type: 'alias', previousId: u.anon, userId: uid }, signupAt - 2000);
      u.userOnly = true;
    } else {
      emit(u, { type: 'identify', userId: uid, anonymousId: u.anon, traits: { email: `${uid}@example.com`, plan: u.plan, company: rnd.chance(0.3) ? null : `Co ${u.i % 17}` } }, signupAt - 1000);
    }
    u.loggedIn = true;
    emit(u, { event: 'signup', properties: { method: rnd.pick(['email', 'google', 'github']), success: true, plan: 'free', country: u.country }, ...ids(u) }, signupAt);
    if (legacy) emit(u, { type: 'alias', previousId: legacy, userId: uid }, signupAt + rnd.int(5000, 20000));

    // activation: quick, slow (beyond a 14-day window) or never
    const act = rnd.weighted([['fast', 55], ['slow', 15], ['never', 30]]);
    let activatedAt = null;
    if (act !== 'never') {
      activatedAt = act === 'fast' ? signupAt + rnd.expo(1.5 * DAY) + 60000 : signupAt + (14 + rnd.next() * 8) * DAY;
      if (activatedAt < SPRING_END) activatedAt = emit(u, { event: 'activate', properties: { feature: rnd.pick(['reports', 'export', 'dashboard']) }, ...ids(u) }, activatedAt);
      else activatedAt = null;
    }
    let cancelled = false;
    if (activatedAt && rnd.chance(0.12)) {
      emit(u, { event: 'cancel', properties: { reason: rnd.pick(['price', 'missing feature', 'other']) }, ...ids(u) }, activatedAt + rnd.int(1, 72) * HOUR);
      cancelled = true;
    }

    // a second device: anonymous until the user logs in there
    let device2 = null;
    if (rnd.chance(0.15)) device2 = signupAt + rnd.int(2, 20) * DAY;

    // a few accounts are renamed: the user id itself is aliased to a new id, one level only
    let renameAt = rnd.chance(0.03) ? signupAt + rnd.int(3, 30) * DAY : null;

    // activity days, purchases
    let nextPurchase = activatedAt ? activatedAt + (cancelled && rnd.chance(0.6) ? 100 * DAY : rnd.weighted([[rnd.expo(3 * DAY), 60], [(10 + rnd.next() * 10) * DAY, 15], [100 * DAY, 25]])) : Infinity;
    for (let d = Math.floor(signupAt / DAY) * DAY + DAY; d <= lastDay && d < SPRING_END; d += DAY) {
      const p = u.kind === 'returning' ? 0.5 : 0.6;
      if (device2 && d >= device2) {
        u.anon = `${prefix}anon2-${seed}-${u.i}`;
        u.loggedIn = false;
        const st = daytime(u, d);
        const after = session(u, st, { n: rnd.int(1, 3) });
        u.loggedIn = true;
        emit(u, { type: 'identify', userId: u.userId, anonymousId: u.anon, traits: { plan: u.plan } }, after + 5000);
        device2 = null;
        continue;
      }
      if (renameAt && d >= renameAt) {
        const nid = `${prefix}acct-${seed}-${u.i}`;
        emit(u, { type: 'alias', previousId: u.userId, userId: nid }, daytime(u, d));
        u.userId = nid;
        u.renamed = true;
        renameAt = null;
        continue;
      }
      if (!rnd.chance(p)) continue;
      let st = daytime(u, d);
      st = session(u, st, { marketing: false });
      while (nextPurchase <= st + HOUR) {
        const pt = Math.max(nextPurchase, st);
        purchase(u, pt + rnd.int(1000, 60000));
        nextPurchase = u.kind === 'returning' && rnd.chance(0.85) ? pt + (2 + rnd.expo(6)) * DAY : Infinity;
        if (nextPurchase !== Infinity && rnd.chance(0.08)) emit(u, { event: 'cancel', properties: { reason: 'downgrade' }, ...ids(u) }, pt + rnd.int(2, 48) * HOUR);
      }
      if (rnd.chance(0.01)) emit(u, { event: 'signup', properties: { method: 'email', success: true, plan: 'free', invited: true }, ...ids(u) }, st + rnd.int(1000, 100000));
    }
  }

  // shared devices: a later user identifies on an anonymous id already linked (earliest wins)
  const registered = people.filter((u) => u.userId && !u.userOnly && !u.renamed);
  for (let k = 0; k + 1 < registered.length && k < 8; k += 2) {
    const a = registered[k];
    const b = registered[k + 1];
    const t = SPRING_END - rnd.int(2, 9) * DAY + rnd.int(0, DAY - 1);
    emit(b, { type: 'identify', userId: b.userId, anonymousId: a.anon, traits: {} }, t);
    emit(b, { event: 'pageview', properties: { path: '/app' }, userId: b.userId, anonymousId: a.anon }, t + 3000);
  }

  // autumn: some returning users come back and a few new ones arrive, across the fall-back days
  for (const u of people) {
    const newcomer = !u.userId && rnd.chance(0.1);
    if (!(u.kind === 'returning' && rnd.chance(0.3)) && !newcomer) continue;
    for (let d = AUTUMN_START; d < AUTUMN_END; d += DAY) {
      if (!rnd.chance(0.3)) continue;
      session(u, daytime(u, d), { marketing: !u.userId });
      if (u.userId && rnd.chance(0.2)) purchase(u, daytime(u, d) + 2 * HOUR);
    }
  }
  // events in the repeated and skipped hours: 2024-10-27 in Europe (02:00-03:00 twice), 2024-11-03
  // in America/New_York (01:00-02:00 twice), 2024-03-10 and 2024-03-31 (skipped hours)
  const night = [
    [Date.UTC(2024, 9, 26, 23, 0), 3 * HOUR], // Berlin 01:00 CEST .. 03:00 CET
    [Date.UTC(2024, 10, 3, 4, 0), 3 * HOUR], // New York 00:00 EDT .. 02:00 EST
    [Date.UTC(2024, 2, 10, 5, 0), 3 * HOUR], // New York 00:00 EST .. 04:00 EDT
    [Date.UTC(2024, 2, 30, 23, 0), 3 * HOUR], // Berlin 00:00 CET .. 03:00 CEST
  ];
  const nightOwls = people.filter((u) => u.userId).slice(0, 30);
  for (const [from, len] of night) {
    for (const u of nightOwls) {
      if (!rnd.chance(0.6)) continue;
      session(u, from + rnd.int(0, len - 1), { n: rnd.int(1, 3), marketing: false });
    }
  }

  out.sort((a, b) => (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : 0));
  return out;
}

// The Segment message that capture turns into the record e (without its write key).
export function toSegment(e) {
  const m = { type: e.type, messageId: e.messageId, timestamp: e.timestamp };
  if (e.userId != null) m.userId = e.userId;
  if (e.anonymousId != null) m.anonymousId = e.anonymousId;
  if (e.previousId != null) m.previousId = e.previousId;
  if (e.event != null) m.event = e.event;
  if (Object.keys(e.properties).length) m.properties = e.properties;
  if (Object.keys(e.traits).length) m.traits = e.traits;
  m.context = e.context;
  return m;
}
