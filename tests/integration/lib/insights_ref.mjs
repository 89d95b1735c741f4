// The reference implementation of docs/analytics.md: plain JavaScript over raw events, written
// from the document's sentences only (never from the server's SQL), so that the insights API can
// be checked against it. Every function takes the events in log order (canonical records as
// docs/capture.md describes them: messageId, type, event, userId, anonymousId, previousId,
// timestamp, properties, traits, context, source) and a query object as the API takes it, and
// returns exactly the API's response body. Queries are assumed valid (the tests check the 400s
// against the server directly).

export const NULL_LABEL = '$$_posthog_breakdown_null_$$';
export const OTHER_LABEL = '$$_posthog_breakdown_other_$$';
const BREAKDOWN_LIMIT = 25;
const DAY = 86400000;
const HOUR = 3600000;

// ---------------------------------------------------------------------------------------------
// Time zones: local wall clock of an instant through Intl, and the instant of a local wall time.

const fmtCache = new Map();
function formatter(tz) {
  let f = fmtCache.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: tz, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit',
    });
    fmtCache.set(tz, f);
  }
  return f;
}

const offCache = new Map();
// UTC offset (ms, local minus UTC) of zone tz at instant t (ms)
export function offsetAt(tz, t) {
  // offsets of real zones change on whole minutes; cache per (zone, minute)
  let zone = offCache.get(tz);
  if (!zone) offCache.set(tz, (zone = new Map()));
  const k = Math.floor(t / 60000);
  let o = zone.get(k);
  if (o !== undefined) return o;
  const s = Math.floor(t / 1000) * 1000;
  const p = {};
  for (const { type, value } of formatter(tz).formatToParts(new Date(s))) p[type] = value;
  const wall = Date.UTC(Number(p.year), Number(p.month) - 1, Number(p.day), Number(p.hour), Number(p.minute), Number(p.second));
  o = wall - s;
  if (zone.size > 2e6) zone.clear();
  zone.set(k, o);
  return o;
}

// the local day number (days since 1970-01-01 of the local calendar date) of instant t
export function localDay(tz, t) {
  return Math.floor((t + offsetAt(tz, t)) / DAY);
}

const dayLabel = (dn) => new Date(dn * DAY).toISOString().slice(0, 10);
const dow = (dn) => (((dn + 4) % 7) + 7) % 7; // 0 = Sunday

// The instant of a local wall time; for a time that occurs twice the earlier one, for a time that
// does not occur the one read with the offset in force before the gap.
export function localToInstant(tz, y, mo, d, h = 0, mi = 0, s = 0) {
  const wall = Date.UTC(y, mo - 1, d, h, mi, s);
  const cands = [...new Set([offsetAt(tz, wall - DAY), offsetAt(tz, wall), offsetAt(tz, wall + DAY)])];
  const ok = cands.map((o) => wall - o).filter((t) => offsetAt(tz, t) === wall - t).sort((a, b) => a - b);
  if (ok.length) return ok[0];
  return wall - offsetAt(tz, wall - DAY);
}

function pad(n, w = 2) {
  return String(n).padStart(w, '0');
}

function offsetLabel(o) {
  const sign = o < 0 ? '-' : '+';
  const m = Math.abs(o) / 60000;
  return `${sign}${pad(Math.floor(m / 60))}:${pad(m % 60)}`;
}

// A calendar of buckets for (interval, tz, weekStart). A bucket is identified by its start
// instant; key(t) is the start of the bucket holding t.
export function calendar(interval = 'day', tz = 'UTC', weekStart = 'monday') {
  const ws = weekStart === 'sunday' ? 0 : 1;
  const starts = new Map();
  const dayStart = (dn) => {
    let t = starts.get(dn);
    if (t === undefined) {
      const dt = new Date(dn * DAY);
      t = localToInstant(tz, dt.getUTCFullYear(), dt.getUTCMonth() + 1, dt.getUTCDate());
      starts.set(dn, t);
    }
    return t;
  };
  const firstDay = (dn) => {
    if (interval === 'day') return dn;
    if (interval === 'week') return dn - ((dow(dn) - ws + 7) % 7);
    const dt = new Date(dn * DAY);
    return Date.UTC(dt.getUTCFullYear(), dt.getUTCMonth(), 1) / DAY;
  };
  const nextFirstDay = (fd) => {
    if (interval === 'day') return fd + 1;
    if (interval === 'week') return fd + 7;
    const dt = new Date(fd * DAY);
    return Date.UTC(dt.getUTCFullYear(), dt.getUTCMonth() + 1, 1) / DAY;
  };
  if (interval === 'hour') {
    const key = (t) => {
      const local = t + offsetAt(tz, t);
      return t - (((local % HOUR) + HOUR) % HOUR);
    };
    return {
      interval, tz,
      key,
      next: (k) => key(k + HOUR),
      prev: (k) => key(k - 1),
      label: (k) => {
        const o = offsetAt(tz, k);
        const iso = new Date(k + o).toISOString();
        return `${iso.slice(0, 13)}:00:00${offsetLabel(o)}`;
      },
      firstDay: (k) => localDay(tz, k),
      unit: 'hour',
    };
  }
  const cal = {
    interval, tz,
    key: (t) => dayStart(firstDay(localDay(tz, t))),
    next: (k) => dayStart(nextFirstDay(localDay(tz, k))),
    prev: (k) => dayStart(firstDay(localDay(tz, k - 1))),
    label: (k) => dayLabel(localDay(tz, k)),
    firstDay: (k) => localDay(tz, k),
    unit: interval,
  };
  return cal;
}

// "YYYY-MM-DD", "YYYY-MM-DDTHH:MM[:SS]" (local), "-Nh|d|w|m", "now" -> instant
export function parseDate(s, tz, now) {
  let m = /^(\d{4})-(\d\d)-(\d\d)(?:T(\d\d):(\d\d)(?::(\d\d))?)?$/.exec(s);
  if (m) return localToInstant(tz, +m[1], +m[2], +m[3], +(m[4] || 0), +(m[5] || 0), +(m[6] || 0));
  if (s === 'now') return now;
  m = /^-(\d+)([hdwm])$/.exec(s);
  if (m) return now - Number(m[1]) * { h: HOUR, d: DAY, w: 7 * DAY, m: 30 * DAY }[m[2]];
  throw new Error(`bad date ${s}`);
}

const nextDate = (s) => new Date(Date.parse(`${s}T00:00:00Z`) + DAY).toISOString().slice(0, 10);

// The range and bucket list of a query: {cal, start, end, buckets: [start instants], labels}
export function range(q, { now = Date.now(), interval } = {}) {
  const tz = q.timezone || 'UTC';
  const cal = calendar(interval || q.interval || 'day', tz, q.weekStart);
  const from = parseDate(q.dateFrom ?? '-7d', tz, now);
  let to = parseDate(q.dateTo ?? 'now', tz, now);
  // a date-only dateTo means through the end of that local day (lead's ruling R1)
  if (/^\d{4}-\d\d-\d\d$/.test(q.dateTo ?? '')) to = parseDate(nextDate(q.dateTo), tz, now) - 1;
  if (from > to) throw new Refused('dateFrom', 'after dateTo');
  const start = cal.key(from);
  const end = cal.next(cal.key(to));
  const buckets = [];
  if (cal.interval === 'hour') {
    // hour buckets across a clock change of less than a whole hour are refused
    for (let t = start; t < end; t += 15 * 60000) {
      const d = offsetAt(tz, t + 15 * 60000) - offsetAt(tz, t);
      if (d % HOUR !== 0) throw new Refused('interval', 'sub-hour clock change');
    }
    for (let t = start; t < end; t += HOUR) {
      const k = cal.key(t);
      if (buckets[buckets.length - 1] !== k) buckets.push(k);
    }
  } else {
    for (let k = start; k < end; k = cal.next(k)) buckets.push(k);
  }
  if (buckets.length > 2000) throw new Refused('dateFrom', 'more than 2000 buckets');
  return { cal, tz, start, end, buckets, labels: buckets.map(cal.label) };
}

const iso = (t) => new Date(t).toISOString();

// a query the definition refuses (400), naming the member
export class Refused extends Error {
  constructor(field, why) {
    super(`${field}: ${why}`);
    this.field = field;
  }
}

// ---------------------------------------------------------------------------------------------
// Events, persons, text forms, filters.

const prepared = new WeakMap();
// -> {evs: [{...record, t, idx, person}], firstSeen: Map(person -> t)}
export function prepare(events) {
  let p = prepared.get(events);
  if (p) return p;
  const evs = events.map((e, idx) => ({ ...e, t: Date.parse(e.timestamp), idx }));
  const links = new Map();
  for (const e of evs) {
    const pairs = [];
    if (e.userId != null && e.anonymousId != null) pairs.push([e.anonymousId, e.userId]);
    if (e.type === 'alias' && e.previousId != null && e.userId != null) pairs.push([e.previousId, e.userId]);
    for (const [from, to] of pairs) {
      if (from === to) continue;
      const cur = links.get(from);
      if (!cur || e.t < cur.t || (e.t === cur.t && e.idx < cur.idx)) links.set(from, { to, t: e.t, idx: e.idx });
    }
  }
  const firstSeen = new Map();
  for (const e of evs) {
    const d = e.userId ?? e.anonymousId;
    e.person = links.has(d) ? links.get(d).to : d;
    const f = firstSeen.get(e.person);
    if (f === undefined || e.t < f) firstSeen.set(e.person, e.t);
  }
  p = { evs, firstSeen, links };
  prepared.set(events, p);
  return p;
}

const COLUMNS = { event: 'event', type: 'type', source: 'source', user_id: 'userId', anonymous_id: 'anonymousId' };

function textForm(v) {
  if (v === null || v === undefined) return undefined;
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

// the text form of key on event e, undefined when unset
export function textOf(e, key) {
  if (Object.hasOwn(COLUMNS, key)) return textForm(e[COLUMNS[key]]);
  const [root, ...path] = key.split('.');
  let v = e[root];
  for (const name of path) {
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && Object.hasOwn(v, name)) v = v[name];
    else return undefined;
  }
  return textForm(v);
}

const NUM_RE = /^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$/;
// a text form read as a number, undefined when it is not numeric
export function numberOf(text) {
  if (text === undefined || !NUM_RE.test(text)) return undefined;
  return Number(text);
}

function matchOne(e, f) {
  const op = f.operator || 'exact';
  const text = textOf(e, f.key);
  const exact = () => {
    if (text === undefined) return false;
    const vals = Array.isArray(f.value) ? f.value : [f.value];
    return vals.some((v) => textForm(v) === text);
  };
  const icontains = () => text !== undefined && text.toLowerCase().includes(String(textForm(f.value)).toLowerCase());
  switch (op) {
    case 'exact': return exact();
    case 'is_not': return !exact();
    case 'gt': case 'gte': case 'lt': case 'lte': {
      const n = numberOf(text);
      if (n === undefined) return false;
      return op === 'gt' ? n > f.value : op === 'gte' ? n >= f.value : op === 'lt' ? n < f.value : n <= f.value;
    }
    case 'icontains': return icontains();
    case 'not_icontains': return !icontains();
    case 'is_set': return text !== undefined;
    case 'is_not_set': return text === undefined;
    default: throw new Error(`operator ${op}`);
  }
}

export function matchAll(e, filters) {
  return !filters || filters.every((f) => matchOne(e, f));
}

// does e match entity (a series, step or exclusion) under the query's global filters
function matchEntity(e, entity, q, anyEvent = false) {
  if (entity.event != null) {
    if (e.event !== entity.event) return false;
  } else if (!anyEvent) return false;
  return matchAll(e, q.properties) && matchAll(e, entity.properties);
}

function breakdownValue(e, key) {
  const v = textOf(e, key);
  return v === undefined || v === '' ? null : v;
}

const byteCmp = (a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b));

// rows from value -> weight: top 25 by weight desc then value asc, "other", null
function rankRows(weights, hasNull) {
  const vals = [...weights.keys()].sort((a, b) => weights.get(b) - weights.get(a) || byteCmp(a, b));
  const top = vals.slice(0, BREAKDOWN_LIMIT);
  const rows = [...top];
  if (vals.length > BREAKDOWN_LIMIT) rows.push(OTHER_LABEL);
  if (hasNull) rows.push(NULL_LABEL);
  const topSet = new Set(top);
  const rowOf = (v) => (v === null ? (hasNull ? NULL_LABEL : undefined) : topSet.has(v) ? v : vals.length > BREAKDOWN_LIMIT ? OTHER_LABEL : undefined);
  return { rows, rowOf };
}

// ---------------------------------------------------------------------------------------------
// Statistics.

export function quantileCont(xs, q) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const pos = q * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

const PROP_MATH = {
  sum: (xs) => xs.reduce((a, b) => a + b, 0),
  avg: (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0),
  min: (xs) => (xs.length ? Math.min(...xs) : 0),
  max: (xs) => (xs.length ? Math.max(...xs) : 0),
  median: (xs) => quantileCont(xs, 0.5) ?? 0,
  p90: (xs) => quantileCont(xs, 0.9) ?? 0,
  p95: (xs) => quantileCont(xs, 0.95) ?? 0,
  p99: (xs) => quantileCont(xs, 0.99) ?? 0,
};
export const PROPERTY_MATHS = Object.keys(PROP_MATH);

// ---------------------------------------------------------------------------------------------
// Trends.

export function trends(events, q, { now = Date.now() } = {}) {
  const { evs } = prepare(events);
  const r = range(q, { now });
  const { cal, start, end, buckets } = r;
  const inRange = evs.filter((e) => e.t >= start && e.t < end);
  const series = q.series;
  const matches = (e, s) => matchEntity(e, s, q, true);

  let rows = [null];
  let rowOf = () => null;
  if (q.breakdown) {
    const w = new Map();
    let hasNull = false;
    for (const e of inRange) {
      if (!series.some((s) => matches(e, s))) continue;
      const v = breakdownValue(e, q.breakdown);
      if (v === null) hasNull = true;
      else w.set(v, (w.get(v) || 0) + 1);
    }
    const rk = rankRows(w, hasNull);
    rows = rk.rows;
    rowOf = (e) => rk.rowOf(breakdownValue(e, q.breakdown));
  }

  const bucketIndex = new Map(buckets.map((k, i) => [k, i]));
  const results = [];
  series.forEach((s, si) => {
    let math = s.math || 'total';
    if ((math === 'wau' && (cal.interval === 'week' || cal.interval === 'month')) || (math === 'mau' && cal.interval === 'month')) math = 'unique_users';
    const group = (list) => {
      const m = new Map(rows.map((row) => [row, []]));
      for (const e of list) m.get(rowOf(e))?.push(e);
      return m;
    };
    const selByRow = group(inRange.filter((e) => matches(e, s)));
    let allByRow = null;
    for (const row of rows) {
      const sel = selByRow.get(row);
      const per = buckets.map(() => []);
      for (const e of sel) per[bucketIndex.get(cal.key(e.t))].push(e);
      let data;
      let count;
      if (math === 'total') {
        data = per.map((x) => x.length);
        count = sel.length;
      } else if (math === 'unique_users' || math === 'dau') {
        data = per.map((x) => new Set(x.map((e) => e.person)).size);
        count = new Set(sel.map((e) => e.person)).size;
      } else if (math === 'wau' || math === 'mau') {
        const span = math === 'wau' ? 7 : 30;
        allByRow ??= group(evs.filter((e) => matches(e, s)));
        const all = allByRow.get(row);
        const byDay = new Map(); // local day -> persons active on it
        for (const e of all) {
          const dn = localDay(r.tz, e.t);
          if (!byDay.has(dn)) byDay.set(dn, new Set());
          byDay.get(dn).add(e.person);
        }
        data = buckets.map((k) => {
          const d = cal.firstDay(k);
          const persons = new Set();
          for (let x = d - span + 1; x <= d; x++) for (const p of byDay.get(x) ?? []) persons.add(p);
          return persons.size;
        });
        count = new Set(sel.map((e) => e.person)).size;
      } else if (PROP_MATH[math]) {
        const nums = (x) => x.map((e) => numberOf(textOf(e, s.mathProperty))).filter((n) => n !== undefined);
        data = per.map((x) => PROP_MATH[math](nums(x)));
        count = PROP_MATH[math](nums(sel));
      } else throw new Error(`math ${math}`);
      results.push({
        series: si,
        label: s.name ?? (s.event ?? 'All events'),
        event: s.event ?? null,
        math: s.math || 'total',
        breakdown: row,
        labels: r.labels,
        data,
        count,
      });
    }
  });
  return { results, interval: cal.interval, timezone: r.tz, dateFrom: iso(start), dateTo: iso(end) };
}

// ---------------------------------------------------------------------------------------------
// Funnels.

const WINDOW_UNIT = { second: 1000, minute: 60000, hour: HOUR, day: DAY, week: 7 * DAY, month: 30 * DAY };

// One actor's sorted events [{t, steps: [..], excl: [..]}] -> {furthest, times} or null when the
// actor has no step-0 event or is excluded. Exported for the hand-made cases.
export function funnelActor(list, nSteps, windowMs, order, exclusions = []) {
  if (!list.some((x) => x.steps.includes(0))) return null;
  if (order === 'unordered') {
    let best = 0;
    for (const x of list) {
      const seen = new Set();
      for (const y of list) if (y.t >= x.t - windowMs && y.t <= x.t) for (const s of y.steps) seen.add(s);
      best = Math.max(best, seen.size);
    }
    return { furthest: best - 1, times: null };
  }
  const levels = new Array(nSteps).fill(null);
  let furthest = -1;
  let chain = null;
  let nextId = 0;
  for (const x of list) {
    const filled = new Set();
    for (const s of [...x.steps].sort((a, b) => b - a)) {
      if (s === 0) {
        levels[0] = { id: nextId++, start: x.t, times: [x.t] };
        filled.add(0);
      } else {
        const prev = levels[s - 1];
        if (prev && x.t - prev.start <= windowMs && !(levels[s] && levels[s].id === prev.id)) {
          levels[s] = { id: prev.id, start: prev.start, times: [...prev.times, x.t] };
          filled.add(s);
        }
      }
    }
    if (order === 'strict') for (let s = 0; s < nSteps; s++) if (!filled.has(s)) levels[s] = null;
    for (let s = nSteps - 1; s > furthest; s--) {
      if (levels[s]) {
        furthest = s;
        chain = levels[s];
        break;
      }
    }
  }
  // exclusions against the actor's chain
  for (const x of list) {
    for (const j of x.excl) {
      const { fromStep, toStep } = exclusions[j];
      if (furthest < fromStep) continue;
      const tFrom = chain.times[fromStep];
      if (!(x.t > tFrom)) continue;
      if (furthest >= toStep ? x.t < chain.times[toStep] : x.t - chain.start <= windowMs) return null;
    }
  }
  return { furthest, times: chain.times };
}

export function funnel(events, q, { now = Date.now() } = {}) {
  const { evs } = prepare(events);
  const r = range({ ...q, interval: 'day' }, { now });
  const { start, end } = r;
  const steps = q.steps;
  const order = q.funnelOrder || 'ordered';
  const exclusions = q.exclusions || [];
  const windowMs = (q.funnelWindow ?? 14) * WINDOW_UNIT[q.funnelWindowUnit || 'day'];
  const byActor = new Map();
  for (const e of evs) {
    if (e.t < start || e.t >= end) continue;
    const st = [];
    steps.forEach((s, i) => { if (matchEntity(e, s, q)) st.push(i); });
    const ex = [];
    exclusions.forEach((s, j) => { if (matchEntity(e, s, q)) ex.push(j); });
    const keep = order === 'strict' ? matchAll(e, q.properties) : st.length > 0 || ex.length > 0;
    if (!keep) continue;
    if (!byActor.has(e.person)) byActor.set(e.person, []);
    byActor.get(e.person).push({ t: e.t, idx: e.idx, steps: st, excl: ex, e });
  }
  const low = (x) => (x.steps.length ? Math.min(...x.steps) : Infinity);
  const actors = [];
  for (const [person, list] of byActor) {
    list.sort((a, b) => a.t - b.t || low(a) - low(b) || a.idx - b.idx);
    const res = funnelActor(list, steps.length, windowMs, order, exclusions);
    if (!res) continue;
    let bd = null;
    if (q.breakdown) {
      for (const x of list) {
        const v = breakdownValue(x.e, q.breakdown);
        if (v !== null) { bd = v; break; }
      }
    }
    actors.push({ person, ...res, bd });
  }
  let groups = [[null, actors]];
  if (q.breakdown) {
    const w = new Map();
    let hasNull = false;
    for (const a of actors) {
      if (a.bd === null) hasNull = true;
      else w.set(a.bd, (w.get(a.bd) || 0) + 1);
    }
    const rk = rankRows(w, hasNull);
    groups = rk.rows.map((row) => [row, actors.filter((a) => rk.rowOf(a.bd) === row)]);
  }
  const results = groups.map(([row, list]) => {
    const counts = steps.map((_, i) => list.filter((a) => a.furthest >= i).length);
    return {
      breakdown: row,
      steps: steps.map((s, i) => {
        let avg = null;
        let med = null;
        if (i > 0 && order !== 'unordered') {
          const d = list.filter((a) => a.furthest >= i).map((a) => (a.times[i] - a.times[i - 1]) / 1000);
          if (d.length) {
            avg = d.reduce((x, y) => x + y, 0) / d.length;
            med = quantileCont(d, 0.5);
          }
        }
        return {
          order: i,
          name: s.name ?? s.event,
          count: counts[i],
          conversionRate: counts[0] ? counts[i] / counts[0] : 0,
          stepConversionRate: i === 0 ? 1 : counts[i - 1] ? counts[i] / counts[i - 1] : 0,
          averageConversionTime: avg,
          medianConversionTime: med,
        };
      }),
    };
  });
  return { results, timezone: r.tz, dateFrom: iso(start), dateTo: iso(end) };
}

// ---------------------------------------------------------------------------------------------
// Retention.

export function retention(events, q, { now = Date.now() } = {}) {
  const { evs } = prepare(events);
  const tz = q.timezone || 'UTC';
  const cal = calendar(q.period || 'day', tz, q.weekStart);
  const n = q.totalIntervals ?? 7;
  const dateOnly = /^\d{4}-\d\d-\d\d$/.test(q.dateTo ?? '');
  const last = cal.key(dateOnly ? parseDate(nextDate(q.dateTo), tz, now) - 1 : parseDate(q.dateTo ?? 'now', tz, now));
  const periods = [last];
  while (periods.length < n) periods.unshift(cal.prev(periods[0]));
  const index = new Map(periods.map((k, i) => [k, i]));
  const start = periods[0];
  const end = cal.next(last);
  const isTarget = (e) => matchEntity(e, q.targetEvent, q);
  const isReturn = (e) => matchEntity(e, q.returningEvent, q);
  const cohorts = periods.map(() => new Set());
  const type = q.retentionType || 'recurring';
  if (type === 'recurring') {
    for (const e of evs) if (e.t >= start && e.t < end && isTarget(e)) cohorts[index.get(cal.key(e.t))].add(e.person);
  } else {
    const first = new Map();
    for (const e of evs) if (isTarget(e) && (!first.has(e.person) || e.t < first.get(e.person))) first.set(e.person, e.t);
    for (const [p, t] of first) if (t >= start && t < end) cohorts[index.get(cal.key(t))].add(p);
  }
  const returns = periods.map(() => new Set());
  for (const e of evs) if (e.t >= start && e.t < end && isReturn(e)) returns[index.get(cal.key(e.t))].add(e.person);
  const results = periods.map((k, i) => {
    const size = cohorts[i].size;
    const values = [];
    for (let j = 0; i + j < n; j++) {
      const c = j === 0 ? size : [...cohorts[i]].filter((p) => returns[i + j].has(p)).length;
      values.push({ count: c, percentage: size ? (100 * c) / size : 0 });
    }
    return { date: cal.label(k), cohortSize: size, values };
  });
  return { results, period: cal.interval, timezone: tz, dateFrom: iso(start), dateTo: iso(end) };
}

// ---------------------------------------------------------------------------------------------
// Stickiness.

export function stickiness(events, q, { now = Date.now() } = {}) {
  const { evs } = prepare(events);
  const r = range(q, { now });
  const { cal, start, end, buckets } = r;
  const M = buckets.length;
  const unit = cal.unit;
  const labels = [];
  const days = [];
  for (let k = 1; k <= M; k++) {
    labels.push(`${k} ${unit}${k === 1 ? '' : 's'}`);
    days.push(k);
  }
  const results = q.series.map((s, si) => {
    const per = new Map();
    for (const e of evs) {
      if (e.t < start || e.t >= end || !matchEntity(e, s, q, true)) continue;
      if (!per.has(e.person)) per.set(e.person, new Set());
      per.get(e.person).add(cal.key(e.t));
    }
    const data = new Array(M).fill(0);
    for (const set of per.values()) data[set.size - 1]++;
    return { series: si, label: s.name ?? (s.event ?? 'All events'), event: s.event ?? null, labels, days, data, count: per.size };
  });
  return { results, interval: cal.interval, timezone: r.tz, dateFrom: iso(start), dateTo: iso(end) };
}

// ---------------------------------------------------------------------------------------------
// Lifecycle.

export function lifecycle(events, q, { now = Date.now() } = {}) {
  const { evs, firstSeen } = prepare(events);
  const r = range(q, { now });
  const { cal, start, end, buckets } = r;
  const s = q.series[0];
  const active = new Map(); // person -> Set(bucket)
  for (const e of evs) {
    if (e.t >= end || !matchEntity(e, s, q, true)) continue;
    if (!active.has(e.person)) active.set(e.person, new Set());
    active.get(e.person).add(cal.key(e.t));
  }
  const data = { new: [], returning: [], resurrecting: [], dormant: [] };
  for (const p of buckets) {
    const before = cal.prev(p);
    let nw = 0;
    let ret = 0;
    let res = 0;
    let dor = 0;
    for (const [person, set] of active) {
      const now = set.has(p);
      const prev = set.has(before);
      const firstBucket = cal.key(firstSeen.get(person));
      if (now && firstBucket === p) nw++;
      else if (now && prev) ret++;
      else if (now) res++;
      else if (prev) dor++;
    }
    data.new.push(nw);
    data.returning.push(ret);
    data.resurrecting.push(res);
    data.dormant.push(dor ? -dor : 0);
  }
  const results = ['new', 'returning', 'resurrecting', 'dormant'].map((status) => ({ status, labels: r.labels, data: data[status] }));
  return { results, interval: cal.interval, timezone: r.tz, dateFrom: iso(start), dateTo: iso(end) };
}

export const insight = { trends, funnel, retention, stickiness, lifecycle };
