/*! immortus.js: the browser client of immortus. No dependency; ES2020.
 *
 * Load it as a classic script, which defines the one global `Immortus`:
 *
 *     <script src="/immortus/immortus.js"></script>
 *     Immortus.create("/reports", {year: 2026}).then((job) => Immortus.verify(job))
 *
 * or as an ES module through `immortus.mjs`, which imports this file and re-exports it:
 *
 *     import Immortus, {create, verify} from "/immortus/immortus.mjs";
 *
 * A file cannot be a classic script and a module at once (`export` is a syntax error in a
 * classic script), so this file holds the code and stays a valid module body too (strict, no
 * top-level `this`); the module file is three lines. See docs/javascript.md.
 *
 * Two parts: the client (create, verify, batch, cancel), then the widget built on it: the custom
 * element <immortus-job> and Immortus.mount (docs/widget.md). One file, so one request and
 * one route serve both.
 */
(function (root) {
  'use strict';

  const VERSION = '0.1.0';
  const existing = root.Immortus;
  if (existing && existing.version === VERSION) {
    return; // loaded twice (a script tag and the module): keep one ImmortusError class
  }

  const DEFAULT_BASE_URL = '/immortus';
  const DEFAULT_INTERVAL = 500;
  const DEFAULT_RETRY = Object.freeze({limit: 5, base: 500, max: 10000});
  const TRANSPORTS = ['auto', 'sse', 'polling'];
  // The HTTP status verify answers with an error body, by its `error.type`.
  const ERROR_STATUS = {InvalidInput: 400, StoreUnavailable: 503, StrategyError: 500, ServerError: 500};
  // The states of a verify body's `status`.
  const STATES = ['created', 'started', 'retrying', 'finished', 'failed', 'cancelled', 'lost',
    'unknown'];

  /** A request answered with an error status, or could not be made (`status` 0). */
  class ImmortusError extends Error {
    constructor(message, status, body, options) {
      super(message, options);
      this.name = 'ImmortusError';
      this.status = status;
      this.body = body === undefined ? null : body;
    }
  }

  // Progress listeners of each verify promise (the third argument of `.then`).
  const progressListeners = new WeakMap();

  /** The promise `verify` returns: a real Promise whose `then` takes a third, progress callback.
   *  Promises chained from it are plain Promises (Symbol.species). */
  class ImmortusPromise extends Promise {
    static get [Symbol.species]() {
      return Promise;
    }

    then(onFulfilled, onRejected, onProgress) {
      const listeners = progressListeners.get(this);
      if (listeners && typeof onProgress === 'function') {
        listeners.push(onProgress);
      }
      return super.then(onFulfilled, onRejected);
    }
  }

  const report = typeof root.reportError === 'function'
    ? (error) => root.reportError(error)
    : (error) => setTimeout(() => { throw error; });

  // A failing callback is the page's bug: reported like an uncaught error, never breaking us.
  function callSafely(callback, value) {
    try {
      callback(value);
    } catch (error) {
      report(error);
    }
  }

  function isObject(value) {
    return value !== null && typeof value === 'object' && !Array.isArray(value);
  }

  function abortReason(signal) {
    return signal.reason !== undefined
      ? signal.reason
      : new DOMException('The operation was aborted.', 'AbortError');
  }

  function readCookie(name) {
    for (const part of document.cookie.split(';')) {
      const eq = part.indexOf('=');
      if (eq !== -1 && part.slice(0, eq).trim() === name) {
        const value = part.slice(eq + 1).trim();
        try {
          return decodeURIComponent(value);
        } catch (error) {
          return value;
        }
      }
    }
    return null;
  }

  /** The page's CSRF token: `<meta name="csrf-token" content>`, else the `csrftoken` cookie. */
  function pageCsrfToken() {
    if (typeof document === 'undefined') {
      return null;
    }
    const meta = document.querySelector('meta[name="csrf-token"]');
    const content = meta && meta.getAttribute('content');
    return content || readCookie('csrftoken');
  }

  function sameOrigin(url) {
    if (typeof location === 'undefined') {
      return false;
    }
    try {
      return new URL(url, location.href).origin === location.origin;
    } catch (error) {
      return false;
    }
  }

  // The headers of a JSON POST, and whether they carry the page's CSRF token.
  function jsonHeaders(extra, url, csrfToken) {
    const headers = new Headers({'Content-Type': 'application/json', Accept: 'application/json'});
    const token = csrfToken === undefined ? pageCsrfToken() : csrfToken;
    const withToken = Boolean(token) && sameOrigin(url); // never hand the token to another origin
    if (withToken) {
      headers.set('X-CSRFToken', token);
      headers.set('X-CSRF-Token', token);
    }
    new Headers(extra || {}).forEach((value, name) => headers.set(name, value));
    return {headers, withToken};
  }

  // A response read whole: {status, ok, body, redirected} (body: the JSON, else the text, else
  // null; `redirected`: a redirect answered a `redirect: 'manual'` request, unread).
  async function readAnswer(response) {
    if (response.type === 'opaqueredirect') {
      return {status: response.status, ok: false, body: null, redirected: true};
    }
    const text = await response.text();
    let body = null;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch (error) {
        body = text;
      }
    }
    return {status: response.status, ok: response.ok, body, redirected: false};
  }

  // One HTTP exchange, read whole. Rejects with fetch's own error when the request cannot be
  // made or its body read.
  async function exchange(url, init) {
    return readAnswer(await fetch(url, init));
  }

  // POST `data` as JSON with the page's CSRF token (options: headers, csrfToken, signal); the
  // answer read whole, or with `raw`, the Response itself. A POST that carries the token never
  // follows a redirect (the next hop could be another origin, and fetch would send it the
  // token). Rejects with fetch's own error.
  function sendJSON(url, data, options, raw) {
    const {headers, withToken} = jsonHeaders(options.headers, url, options.csrfToken);
    const init = {
      method: 'POST',
      headers,
      body: JSON.stringify(data === undefined ? {} : data),
      credentials: 'same-origin',
      cache: 'no-store',
      redirect: withToken ? 'manual' : 'follow',
      signal: options.signal,
    };
    return raw ? fetch(url, init) : exchange(url, init);
  }

  function redirectError(url) {
    return new ImmortusError(
      `immortus: POST ${url} answered a redirect, which a POST carrying the page's CSRF token ` +
      'never follows: POST to the final URL', 0, null);
  }

  function httpError(method, url, answer) {
    const error = isObject(answer.body) && isObject(answer.body.error) ? answer.body.error : null;
    const detail = error && typeof error.message === 'string' ? `: ${error.message}` : '';
    return new ImmortusError(
      `immortus: ${method} ${url} answered ${answer.status}${detail}`, answer.status, answer.body);
  }

  function networkError(method, url, cause) {
    return new ImmortusError(`immortus: ${method} ${url} failed: ${cause}`, 0, null, {cause});
  }

  // POST `data` as JSON with the page's CSRF token; resolve with the JSON object answered.
  // A redirect answer rejects (see `sendJSON`).
  async function postJSON(url, data, options) {
    const signal = options.signal;
    let answer;
    try {
      answer = await sendJSON(url, data, options);
    } catch (error) {
      throw signal && signal.aborted ? abortReason(signal) : networkError('POST', url, error);
    }
    if (answer.redirected) {
      throw redirectError(url);
    }
    if (!answer.ok) {
      throw httpError('POST', url, answer);
    }
    if (!isObject(answer.body)) {
      throw new ImmortusError(
        `immortus: POST ${url} answered no JSON object`, answer.status, answer.body);
    }
    return answer.body;
  }

  /** POST `data` as JSON to an enqueue view; resolve with its job info. */
  function create(url, data, options) {
    return postJSON(String(url), data, options || {});
  }

  function baseUrlOf(options) {
    const base = options.baseUrl === undefined ? DEFAULT_BASE_URL : String(options.baseUrl);
    return base.replace(/\/+$/, '');
  }

  function jobPath(base, route, jobInfo) {
    let path = `${base}/${route}/${encodeURIComponent(String(jobInfo.job_id))}`;
    if (jobInfo.job_class !== undefined && jobInfo.job_class !== null) {
      path += `/${encodeURIComponent(String(jobInfo.job_class))}`;
    }
    if (jobInfo.token !== undefined && jobInfo.token !== null) {
      path += `?token=${encodeURIComponent(String(jobInfo.token))}`;
    }
    return path;
  }

  function numberOption(value, fallback, name) {
    if (value === undefined) {
      return fallback;
    }
    if (typeof value !== 'number' || !(value >= 0) || value === Infinity) {
      throw new TypeError(`immortus: ${name} must be a finite number >= 0, not ${value}`);
    }
    return value;
  }

  function retryPolicy(retry) {
    if (retry === false) {
      return {limit: 1, base: 0, max: 0};
    }
    const given = isObject(retry) ? retry : {};
    return {
      limit: Math.max(1, numberOption(given.limit, DEFAULT_RETRY.limit, 'retry.limit')),
      base: numberOption(given.base, DEFAULT_RETRY.base, 'retry.base'),
      max: numberOption(given.max, DEFAULT_RETRY.max, 'retry.max'),
    };
  }

  // Most jobs one multi-job stream or batch poll carries (the server's batch limit): a page
  // that follows more opens one stream per this many.
  const MAX_JOBS = 100;
  // ms the hub waits after a job joins before it (re)opens the stream: jobs added together (a
  // page of widgets) share one request.
  const GATHER_DELAY = 50;
  // ms a page polls after the server refused its stream for now (503, 429, a failed request)
  // before it tries a stream again.
  const STREAM_RETRY_AFTER = 15000;
  const CAN_STREAM = typeof root.fetch === 'function' && typeof root.ReadableStream === 'function' &&
    typeof root.TextDecoder === 'function';

  function backoff(retry, failures) {
    return Math.min(retry.max, retry.base * 2 ** (failures - 1));
  }

  // The HTTP status a single verify would have answered with a batch item's body.
  function codeOf(body) {
    if (!isObject(body)) {
      return 500;
    }
    if (STATES.includes(body.status)) {
      return body.status === 'unknown' ? 404 : 200;
    }
    const type = isObject(body.error) ? body.error.type : null;
    return ERROR_STATUS[type] || 500;
  }

  // The states a group ends in, once every member has ended.
  const GROUP_ENDS = ['finished', 'failed', 'cancelled'];

  function isGroupInfo(info) {
    return isObject(info) && (typeof info.group_id === 'string' || typeof info.group_id === 'number');
  }

  // Whether a 200 body is final: a job's `completed` flag, or a group's state once every
  // member has ended (a group body's `completed` is a count).
  function isFinal(body) {
    return body.completed === true ||
      (typeof body.completed === 'number' && GROUP_ENDS.includes(body.status));
  }

  // The item of a batch or stream request: {job_id, job_class?, token?} or {group_id, token?}.
  function jobItem(jobInfo) {
    if (isGroupInfo(jobInfo)) {
      const group = {group_id: String(jobInfo.group_id)};
      if (jobInfo.token !== undefined && jobInfo.token !== null) {
        group.token = String(jobInfo.token);
      }
      return group;
    }
    const item = {job_id: String(jobInfo.job_id)};
    if (jobInfo.job_class !== undefined && jobInfo.job_class !== null) {
      item.job_class = String(jobInfo.job_class);
    }
    if (jobInfo.token !== undefined && jobInfo.token !== null) {
      item.token = String(jobInfo.token);
    }
    return item;
  }

  /** One verify: the job is followed by the page's hub (one shared stream, or one batched
   *  poll), or, for a custom verify endpoint, by polling that URL. */
  class Watch {
    constructor(jobInfo, options, sink) {
      this.sink = sink; // {progress(body), resolve(body), reject(error)}
      this.signal = options.signal || null;
      this.interval = numberOption(
        isObject(options.polling) ? options.polling.interval : undefined,
        DEFAULT_INTERVAL, 'polling.interval');
      this.retry = retryPolicy(options.retry);
      this.transport = options.transport === undefined ? 'auto' : options.transport;
      if (!TRANSPORTS.includes(this.transport)) {
        throw new TypeError(`immortus: transport must be one of ${TRANSPORTS.join(', ')}`);
      }
      if (!isObject(jobInfo)) {
        throw new TypeError('immortus: verify() needs {job_id, job_class?, token?} or {verify_job_url}');
      }
      this.hub = null;
      if (typeof jobInfo.verify_job_url === 'string') {
        this.pollUrl = jobInfo.verify_job_url;
      } else if (isGroupInfo(jobInfo)) {
        this.item = jobItem(jobInfo);
        this.key = JSON.stringify(['group', this.item.group_id, this.item.token]);
        this.hub = hubFor(baseUrlOf(options));
      } else if (typeof jobInfo.job_id === 'string' || typeof jobInfo.job_id === 'number') {
        this.item = jobItem(jobInfo);
        this.key = JSON.stringify([this.item.job_id, this.item.job_class, this.item.token]);
        this.hub = hubFor(baseUrlOf(options));
      } else {
        throw new TypeError('immortus: verify() needs a job_id or a verify_job_url');
      }
      if (this.transport === 'sse' && (this.hub === null || !CAN_STREAM)) {
        throw new TypeError(this.hub === null
          ? 'immortus: a verify_job_url is polled; transport "sse" needs a job_id'
          : 'immortus: transport "sse" needs fetch with a streaming body, which this browser lacks');
      }
      this.failures = 0; // failed requests in a row
      this.finished = false;
      this.timer = null;
      this.request = null; // the AbortController of the fetch in flight (custom endpoint)
      this.lastText = null; // the last progress body reported, as JSON
      this.onAbort = () => this.fail(abortReason(this.signal));
    }

    start() {
      if (this.signal) {
        if (this.signal.aborted) {
          this.fail(abortReason(this.signal));
          return;
        }
        this.signal.addEventListener('abort', this.onAbort);
      }
      if (this.hub) {
        this.hub.add(this);
      } else {
        this.poll();
      }
    }

    // The final body: reported to the progress callbacks once, then resolved.
    finish(body) {
      this.stop();
      this.sink.progress(body);
      this.sink.resolve(body);
    }

    fail(error) {
      if (!this.finished) {
        this.stop();
        this.sink.reject(error);
      }
    }

    stop() {
      this.finished = true;
      clearTimeout(this.timer);
      this.timer = null;
      if (this.request) {
        this.request.abort();
        this.request = null;
      }
      if (this.signal) {
        this.signal.removeEventListener('abort', this.onAbort);
      }
      if (this.hub) {
        this.hub.remove(this);
      }
    }

    progress(body) {
      this.sink.progress(body);
    }

    // What the hub got for this job: `code` is the status a single verify would answer with
    // `body`. A stream's repeated body (after a reopen) is reported once; a 503 counts as a
    // failed poll, and a stream keeps following through it.
    deliver(code, body, url, polled) {
      if (this.finished) {
        return;
      }
      if (code === 200 && isObject(body)) {
        this.failures = 0;
        if (isFinal(body)) {
          this.finish(body);
          return;
        }
        const text = JSON.stringify(body);
        if (polled || text !== this.lastText) {
          this.lastText = text;
          this.progress(body);
        }
      } else if (code === 503) {
        if (polled) {
          this.failed(httpError('POST', url, {status: code, body}));
        }
      } else {
        this.fail(httpError('POST', url, {status: code, body}));
      }
    }

    // A shared request failed (network, 503): count it; the `limit`-th in a row rejects.
    failed(error) {
      this.failures += 1;
      if (this.failures >= this.retry.limit) {
        this.fail(error);
      }
    }

    // ms until this job wants its next poll, or its stream reopened after a failure.
    delay() {
      return this.failures > 0 ? backoff(this.retry, this.failures) : this.interval;
    }

    // -- a custom verify endpoint: polled on its own ---------------------------------------

    // Run `next` after `delay` ms, unless a callback stopped this watch meanwhile.
    later(next, delay) {
      if (!this.finished) {
        this.timer = setTimeout(() => {
          this.timer = null;
          next();
        }, delay);
      }
    }

    // A request could not be made (or answered 503): retry with back-off, or give up.
    networkFailure(error, next) {
      this.failed(error);
      this.later(next, backoff(this.retry, this.failures));
    }

    poll() {
      const next = () => this.poll();
      const request = new AbortController();
      this.request = request;
      exchange(this.pollUrl, {
        headers: {Accept: 'application/json'},
        credentials: 'same-origin',
        cache: 'no-store',
        signal: request.signal,
      }).then((answer) => {
        if (this.request === request) {
          this.request = null;
        }
        if (this.finished) {
          return;
        }
        if (answer.status === 503) {
          this.networkFailure(httpError('GET', this.pollUrl, answer), next);
        } else if (!answer.ok) {
          this.fail(httpError('GET', this.pollUrl, answer));
        } else if (!isObject(answer.body)) {
          this.fail(new ImmortusError(
            `immortus: GET ${this.pollUrl} answered no JSON object`, answer.status, answer.body));
        } else if (isFinal(answer.body)) {
          this.finish(answer.body);
        } else {
          this.failures = 0;
          this.progress(answer.body);
          this.later(next, this.interval); // measured from this answer, not from the request
        }
      }, (error) => {
        if (this.request === request) {
          this.request = null;
        }
        if (!this.finished) {
          this.networkFailure(networkError('GET', this.pollUrl, error), next);
        }
      });
    }
  }

  // Each base URL's hub, so that every verify and widget of a page shares one.
  const hubs = new Map();

  function hubFor(base) {
    const key = typeof location === 'undefined' ? base : new URL(`${base}/`, location.href).href;
    let hub = hubs.get(key);
    if (hub === undefined) {
      hub = new Hub(base);
      hubs.set(key, hub);
    }
    return hub;
  }

  /** Every job a page follows under one base URL. The streamed ones share one `POST
   *  {base}/stream` (one per MAX_JOBS jobs), reopened when jobs join; the polled ones (transport
   *  'polling', or 'auto' while the stream is refused) share one `POST {base}/verify`. */
  class Hub {
    constructor(base) {
      this.base = base;
      this.watches = new Set();
      this.streams = new Set();
      this.gathering = null; // the timer that syncs once jobs stopped joining
      this.retryTimer = null; // the timer that reopens after a failure
      this.pollTimer = null;
      this.pollRequest = null; // the AbortController of the batch poll in flight
      this.refusedUntil = 0; // 'auto' jobs are polled until then (Infinity: for good)
    }

    streamed(watch) {
      return watch.transport === 'sse' ||
        (watch.transport === 'auto' && CAN_STREAM && Date.now() >= this.refusedUntil);
    }

    add(watch) {
      this.watches.add(watch);
      if (this.streamed(watch)) {
        for (const stream of this.streams) {
          if (stream.carries(watch.key)) { // already on its way: no reopen
            const last = stream.bodies.get(watch.key);
            if (last) {
              watch.deliver(200, last, stream.url, false);
            }
            return;
          }
        }
      }
      this.gather();
    }

    remove(watch) {
      this.watches.delete(watch);
      const followed = (test) => Array.from(this.watches).some(test);
      for (const stream of Array.from(this.streams)) {
        if (!followed((each) => this.streamed(each) && stream.carries(each.key))) {
          this.drop(stream);
        }
      }
      if (!followed((each) => !this.streamed(each))) {
        this.stopPolling();
      }
      if (this.watches.size === 0) {
        clearTimeout(this.gathering);
        clearTimeout(this.retryTimer);
        this.gathering = this.retryTimer = null;
      }
    }

    drop(stream) {
      stream.close();
      this.streams.delete(stream);
    }

    stopPolling() {
      clearTimeout(this.pollTimer);
      this.pollTimer = null;
      if (this.pollRequest) {
        this.pollRequest.abort();
        this.pollRequest = null;
      }
    }

    gather() {
      if (this.gathering === null) {
        this.gathering = setTimeout(() => {
          this.gathering = null;
          this.sync();
        }, GATHER_DELAY);
      }
    }

    // Sync in `delay` ms (a reopen after a failure).
    later(delay) {
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        this.sync();
      }, delay);
    }

    // Open the streams the streamed jobs need (replacing those that carry other jobs), and
    // start polling the polled jobs.
    sync() {
      const items = new Map();
      let polled = false;
      for (const watch of this.watches) {
        if (!this.streamed(watch)) {
          polled = true;
        } else if (!items.has(watch.key)) {
          items.set(watch.key, watch.item);
        }
      }
      const carried = new Set();
      this.streams.forEach((stream) => stream.live().forEach((key) => carried.add(key)));
      const keys = Array.from(items.keys());
      if (keys.length !== carried.size || !keys.every((key) => carried.has(key))) {
        Array.from(this.streams).forEach((stream) => this.drop(stream));
        for (let start = 0; start < keys.length; start += MAX_JOBS) {
          const chunk = keys.slice(start, start + MAX_JOBS);
          const stream = new SharedStream(this, chunk, chunk.map((key) => items.get(key)));
          this.streams.add(stream);
          stream.run();
        }
      }
      if (polled && this.pollTimer === null && this.pollRequest === null) {
        this.poll();
      }
    }

    // The streamed watches of the jobs `stream` carries.
    riders(stream) {
      return Array.from(this.watches)
        .filter((watch) => this.streamed(watch) && stream.keys.includes(watch.key));
    }

    // An `event: job` frame: `{index, code, body}`.
    frame(stream, frame) {
      const key = stream.keys[frame.index];
      if (key === undefined || stream.ended.has(key)) {
        return;
      }
      const {code, body} = frame;
      stream.delivered = true;
      if (code === 200 && isObject(body)) {
        stream.bodies.set(key, body);
        if (isFinal(body)) {
          stream.ended.add(key);
        }
      } else if (code !== 503) {
        stream.ended.add(key);
      }
      this.riders(stream).filter((watch) => watch.key === key)
        .forEach((watch) => watch.deliver(code, body, stream.url, false));
    }

    // `event: end`: every job of `stream` has ended.
    ended(stream) {
      this.streams.delete(stream);
      if (this.riders(stream).length > 0) {
        this.gather(); // a job the server ended without a last frame: ask again
      }
    }

    // `stream` ended without `event: end`, or broke. One that delivered frames (its lifetime
    // ended, a proxy cut it) is reopened after its `retry:` delay, with the jobs still open;
    // one that delivered nothing failed: 'auto' jobs are polled for a while, 'sse' jobs retry.
    broken(stream, error) {
      this.streams.delete(stream);
      const riders = this.riders(stream);
      if (riders.length === 0) {
        return;
      }
      if (stream.delivered) {
        riders.forEach((watch) => {
          watch.failures = 0;
        });
        this.later(stream.retry !== null ? stream.retry : DEFAULT_RETRY.base);
        return;
      }
      this.refuse(riders, error, true, STREAM_RETRY_AFTER);
    }

    // The server answered the stream request with `answer`, not with a stream.
    refused(stream, answer, retryAfter) {
      this.streams.delete(stream);
      const riders = this.riders(stream);
      const error = answer.redirected ? redirectError(stream.url) : httpError('POST', stream.url, answer);
      if (answer.status === 400) { // one job is malformed (`jobs[3].job_id: ...`): it alone fails
        const message = isObject(answer.body) && isObject(answer.body.error)
          ? String(answer.body.error.message) : '';
        const match = /^jobs\[(\d+)\]/.exec(message);
        const culprit = match ? stream.keys[Number(match[1])] : undefined;
        riders.filter((watch) => culprit === undefined || watch.key === culprit)
          .forEach((watch) => watch.fail(error));
        this.gather();
      } else if (answer.status === 500 || answer.status === 415) { // as verify would: rejected
        riders.forEach((watch) => watch.fail(error));
      } else { // for now (503, 429), or for good (no such route)
        const forNow = answer.status === 503 || answer.status === 429;
        const wait = Math.max(STREAM_RETRY_AFTER, (Number(retryAfter) || 0) * 1000);
        this.refuse(riders, error, forNow, forNow ? wait : Infinity);
      }
    }

    // The stream cannot carry `riders` now: 'sse' ones count a failure (or fail, when the
    // stream is refused for good) and retry after back-off; 'auto' ones are polled for `wait`.
    refuse(riders, error, forNow, wait) {
      let delay = null;
      for (const watch of riders) {
        if (watch.transport === 'sse') {
          if (forNow) {
            watch.failed(error);
          } else {
            watch.fail(error);
          }
          if (!watch.finished) {
            delay = Math.min(delay === null ? Infinity : delay, watch.delay());
          }
        } else {
          this.refusedUntil = Math.max(this.refusedUntil, Date.now() + wait);
          delay = 0;
        }
      }
      if (delay !== null) {
        this.later(delay);
      }
    }

    // One batch verify for every polled job, then the next after the shortest interval (or
    // back-off) the polled jobs ask for.
    async poll() {
      this.pollTimer = null;
      const items = new Map();
      for (const watch of this.watches) {
        if (!this.streamed(watch) && !items.has(watch.key)) {
          items.set(watch.key, watch.item);
        }
      }
      const keys = Array.from(items.keys());
      if (keys.length === 0) {
        return;
      }
      const url = `${this.base}/verify`;
      const request = new AbortController();
      this.pollRequest = request;
      const chunks = [];
      for (let start = 0; start < keys.length; start += MAX_JOBS) {
        chunks.push(keys.slice(start, start + MAX_JOBS));
      }
      const answers = await Promise.all(chunks.map((chunk) => sendJSON(
        url, {jobs: chunk.map((key) => items.get(key))}, {signal: request.signal},
      ).catch((error) => ({error}))));
      if (this.pollRequest !== request) {
        return; // stopped meanwhile
      }
      this.pollRequest = null;
      chunks.forEach((chunk, index) => this.polled(url, chunk, answers[index]));
      if (this.refusedUntil !== Infinity && this.refusedUntil !== 0 && Date.now() >= this.refusedUntil) {
        this.refusedUntil = 0;
        this.gather(); // try the stream again
      }
      const delays = Array.from(this.watches).filter((watch) => !this.streamed(watch))
        .map((watch) => watch.delay());
      if (delays.length > 0 && this.pollTimer === null && this.pollRequest === null) {
        this.pollTimer = setTimeout(() => this.poll(), Math.min(...delays));
      }
    }

    // Hand a batch answer's bodies to the polled watches of `keys`.
    polled(url, keys, answer) {
      const watches = (key) => Array.from(this.watches)
        .filter((watch) => watch.key === key && !this.streamed(watch));
      const all = (each) => keys.forEach((key) => watches(key).forEach(each));
      if (answer.error !== undefined) {
        const error = networkError('POST', url, answer.error);
        all((watch) => watch.failed(error));
      } else if (answer.redirected) {
        const error = redirectError(url);
        all((watch) => watch.fail(error));
      } else if (answer.status === 503) {
        const error = httpError('POST', url, answer);
        all((watch) => watch.failed(error));
      } else if (!answer.ok || !isObject(answer.body) || !Array.isArray(answer.body.jobs)) {
        const error = answer.ok
          ? new ImmortusError(`immortus: POST ${url} answered no jobs array`, answer.status, answer.body)
          : httpError('POST', url, answer);
        all((watch) => watch.fail(error));
      } else {
        const bodies = answer.body.jobs;
        keys.forEach((key, index) => watches(key).forEach(
          (watch) => watch.deliver(codeOf(bodies[index]), bodies[index], url, true)));
      }
    }
  }

  /** One `POST {base}/stream` carrying the jobs `keys`, its Server-Sent Events read with a
   *  streaming body reader (an EventSource cannot POST). */
  class SharedStream {
    constructor(hub, keys, items) {
      this.hub = hub;
      this.keys = keys;
      this.items = items;
      this.url = `${hub.base}/stream`;
      this.controller = new AbortController();
      this.ended = new Set(); // jobs that will get no further frame
      this.bodies = new Map(); // each job's last body
      this.delivered = false;
      this.retry = null; // the `retry:` field, in ms
      this.closed = false; // closed by the hub
      this.over = false; // `event: end` came
    }

    carries(key) {
      return !this.over && this.keys.includes(key) && !this.ended.has(key);
    }

    live() {
      return this.keys.filter((key) => !this.ended.has(key));
    }

    close() {
      this.closed = true;
      this.controller.abort();
    }

    async run() {
      let response;
      try {
        response = await sendJSON(this.url, {jobs: this.items},
          {signal: this.controller.signal, headers: {Accept: 'text/event-stream'}}, true);
      } catch (error) {
        if (!this.closed) {
          this.hub.broken(this, networkError('POST', this.url, error));
        }
        return;
      }
      const type = response.headers.get('Content-Type') || '';
      if (response.status !== 200 || !/^text\/event-stream/i.test(type) || !response.body) {
        let answer;
        try {
          answer = await readAnswer(response);
        } catch (error) {
          answer = {status: response.status, ok: false, body: null, redirected: false};
        }
        if (!this.closed) {
          this.hub.refused(this, answer, response.headers.get('Retry-After'));
        }
        return;
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      try {
        for (;;) {
          const {value, done} = await reader.read();
          if (this.closed || done) {
            break;
          }
          buffer = this.parse(buffer + decoder.decode(value, {stream: true}).replace(/\r\n?/g, '\n'));
        }
      } catch (error) {
        if (!this.closed && !this.over) {
          this.hub.broken(this, networkError('POST', this.url, error));
        }
        return;
      }
      if (!this.closed && !this.over) {
        this.hub.broken(this, new ImmortusError(`immortus: the stream ${this.url} ended early`, 0, null));
      }
    }

    // Dispatch each complete event of `text`; return the incomplete rest.
    parse(text) {
      let start = 0;
      let end = text.indexOf('\n\n');
      while (end !== -1) {
        this.dispatch(text.slice(start, end));
        start = end + 2;
        end = text.indexOf('\n\n', start);
      }
      return text.slice(start);
    }

    dispatch(block) {
      if (this.closed || this.over) {
        return;
      }
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line === '' || line[0] === ':') {
          continue; // a comment: keep-alive
        }
        const colon = line.indexOf(':');
        const field = colon === -1 ? line : line.slice(0, colon);
        const value = colon === -1 ? '' : line.slice(colon + (line[colon + 1] === ' ' ? 2 : 1));
        if (field === 'event') {
          event = value;
        } else if (field === 'data') {
          data.push(value);
        } else if (field === 'retry' && /^\d+$/.test(value)) {
          this.retry = Number(value);
        }
      }
      if (event === 'end') {
        this.over = true;
        this.hub.ended(this);
      } else if (event === 'job' && data.length > 0) {
        let frame = null;
        try {
          frame = JSON.parse(data.join('\n'));
        } catch (error) {
          // not a frame of ours: ignored
        }
        if (isObject(frame)) {
          this.hub.frame(this, frame);
        }
      }
    }
  }

  /** Watch a job until it is completed; resolve with its final verify body. */
  function verify(jobInfo, options) {
    const given = options || {};
    const listeners = [];
    if (typeof given.onProgress === 'function') {
      listeners.push(given.onProgress);
    }
    let sink = null;
    const promise = new ImmortusPromise((resolve, reject) => {
      sink = {resolve, reject, progress: (body) => listeners.slice().forEach((f) => callSafely(f, body))};
    });
    progressListeners.set(promise, listeners);
    try {
      new Watch(jobInfo, given, sink).start();
    } catch (error) {
      sink.reject(error);
    }
    return promise;
  }

  /** Ask the default route to cancel a job; resolve with `{code, body}` for 200 (cancelled),
   *  202 (asked to stop, still running) and 409 (it had already ended). */
  async function cancel(jobInfo, options) {
    const given = options || {};
    if (!isObject(jobInfo) || !(typeof jobInfo.job_id === 'string' || typeof jobInfo.job_id === 'number')) {
      throw new TypeError('immortus: cancel() needs {job_id, job_class?, token?}');
    }
    const item = jobItem(jobInfo);
    const url = given.url !== undefined && given.url !== null ? String(given.url)
      : jobPath(baseUrlOf(given), 'cancel', {job_id: item.job_id, job_class: item.job_class});
    const data = {job_id: item.job_id, job_class: item.job_class || null, token: item.token || null};
    let answer;
    try {
      answer = await sendJSON(url, data, given);
    } catch (error) {
      throw given.signal && given.signal.aborted ? abortReason(given.signal) : networkError('POST', url, error);
    }
    if (answer.redirected) {
      throw redirectError(url);
    }
    if (![200, 202, 409].includes(answer.status)) {
      throw httpError('POST', url, answer);
    }
    return {code: answer.status, body: answer.body};
  }

  /** Ask for many jobs (and groups: {group_id, token?}) in one request: resolve with their
   *  bodies, in order. */
  async function batch(jobs, options) {
    const given = options || {};
    if (!Array.isArray(jobs)) {
      throw new TypeError('immortus: batch() needs an array of {job_id, job_class?, token?}');
    }
    const items = jobs.map((job) => {
      if (isGroupInfo(job)) {
        return jobItem(job);
      }
      const item = {job_id: job.job_id};
      if (job.job_class !== undefined && job.job_class !== null) {
        item.job_class = job.job_class;
      }
      if (job.token !== undefined && job.token !== null) {
        item.token = job.token;
      }
      return item;
    });
    const answer = await postJSON(`${baseUrlOf(given)}/verify`, {jobs: items}, given);
    if (!Array.isArray(answer.jobs)) {
      throw new ImmortusError('immortus: the batch answer holds no jobs array', 200, answer);
    }
    return answer.jobs;
  }


  // -- The widget: <immortus-job> and mount() -----------------------------------------------
  // A custom element that follows one job with verify() and renders it as a card, inside a
  // shadow root (the page's CSS cannot reach in; themes go through --immortus-* properties and
  // ::part). Its light-DOM children are what shows before this script runs.

  const WIDGET_TAG = 'immortus-job';
  const GROUP_TAG = 'immortus-group';
  // The attributes that name what a widget follows, or how: a change follows it anew.
  const WIDGET_ATTRIBUTES = [
    'job-id', 'job-class', 'group-id', 'token', 'verify-url', 'base-url', 'transport', 'interval',
  ];
  // The keys of a verify body shown in their own places; any other key is meta, shown as a chip.
  const RESERVED = new Set([
    'job_id', 'job_class', 'status', 'completed', 'success', 'progress', 'error', 'attempts',
    'enqueued_at', 'started_at', 'finished_at', 'updated_at', 'certain', 'retry_at',
    'cancel_url', 'cancellable', 'history',
  ]);
  // What the message line says in a state when the job says nothing itself.
  const STATE_MESSAGES = {
    created: 'waiting for a worker',
    retrying: 'waiting to be retried',
    lost: 'its worker stopped; no retry is coming',
    unknown: 'no record of this job',
  };
  const SAYS_FIRST = new Set(['lost', 'unknown']); // their message wins over the job's own
  const LIGHT = {
    panel: '#ffffff', ink: '#1d2330', muted: '#5d6678', line: '#e2e5eb', track: '#e9ecf1',
    accent: '#3456d8', created: '#64748b', started: '#2563eb', retrying: '#c2410c',
    finished: '#15803d', failed: '#b91c1c', cancelled: '#6b21a8', lost: '#9a3412',
    unknown: '#64748b', shadow: '0 1px 2px rgb(16 24 40 / 6%), 0 1px 3px rgb(16 24 40 / 10%)',
  };
  const DARK = {
    panel: '#1a1f28', ink: '#e7eaf0', muted: '#9aa3b5', line: '#2b3240', track: '#262d3a',
    accent: '#7c95ff', created: '#94a3b8', started: '#60a5fa', retrying: '#fb923c',
    finished: '#4ade80', failed: '#f87171', cancelled: '#c084fc', lost: '#fdba74',
    unknown: '#94a3b8', shadow: 'none',
  };

  // Each theme value is `var(--immortus-NAME, default)`: a page sets --immortus-NAME to theme it.
  function themeRules(theme) {
    return Object.keys(theme)
      .map((name) => `--_${name}: var(--immortus-${name}, ${theme[name]});`).join(' ');
  }

  const WIDGET_CSS = `
:host { display: block; ${themeRules(LIGHT)}
  --_radius: var(--immortus-radius, 12px);
  --_font: var(--immortus-font, system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif);
  --_mono: var(--immortus-mono, ui-monospace, SFMono-Regular, Menlo, Consolas, monospace); }
:host([hidden]) { display: none; }
:host([theme=dark]) { ${themeRules(DARK)} }
@media (prefers-color-scheme: dark) { :host([theme=auto]) { ${themeRules(DARK)} } }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
.card { background: var(--_panel); color: var(--_ink); font: 15px/1.5 var(--_font);
  border: 1px solid var(--_line); border-left: 4px solid var(--_state);
  border-radius: var(--_radius); padding: 14px 16px; box-shadow: var(--_shadow); }
${STATES.map((state) => `.card[data-state=${state}] { --_state: var(--_${state}); }`).join('\n')}
.top { display: flex; align-items: flex-start; justify-content: space-between; gap: 12px; }
.names { min-width: 0; }
.title { display: block; margin: 0; font-size: 15px; font-weight: 600; }
.id { display: block; color: var(--_muted); font: 12px/1.5 var(--_mono); margin-top: 1px;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.badge { flex: none; font-size: 12px; font-weight: 600; letter-spacing: .02em;
  text-transform: uppercase; color: var(--_state); border: 1px solid var(--_state);
  border-radius: 999px; padding: 1px 10px; }
.bar { position: relative; height: 10px; margin: 12px 0 6px; border-radius: 999px;
  background: var(--_track); overflow: hidden; }
.fill { height: 100%; width: 0; border-radius: inherit; background: var(--_state);
  transition: width .35s ease; }
.card[data-state=started] .fill { background-image: linear-gradient(45deg,
  rgb(255 255 255 / 18%) 25%, transparent 25%, transparent 50%, rgb(255 255 255 / 18%) 50%,
  rgb(255 255 255 / 18%) 75%, transparent 75%); background-size: 16px 16px;
  animation: stripes 1s linear infinite; }
@keyframes stripes { to { background-position: 16px 0; } }
.line { display: flex; gap: 10px; font-size: 13px; color: var(--_muted); min-height: 1.5em; }
.percent { color: var(--_ink); font-weight: 600; font-variant-numeric: tabular-nums; }
.percent:empty { display: none; }
.message { overflow-wrap: anywhere; }
.error { margin: 8px 0 0; padding: 8px 10px; border-radius: 8px; font-size: 13px;
  color: var(--_ink); border: 1px solid var(--_failed); overflow-wrap: anywhere; }
.error b { color: var(--_failed); font-weight: 600; }
.facts { display: flex; flex-wrap: wrap; gap: 4px 22px; margin: 10px 0 0; font-size: 13px; }
.facts div { display: flex; gap: 6px; }
.facts:not(:has(> div:not([hidden]))) { display: none; }
.facts dt { color: var(--_muted); }
.facts dd { margin: 0; font-variant-numeric: tabular-nums; }
.meta { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 8px; }
.meta:empty { display: none; }
.meta span { font-size: 12px; padding: 1px 8px; border-radius: 6px; background: var(--_track);
  color: var(--_ink); }
.meta b { font-weight: 600; }
.actions { margin-top: 10px; }
.cancel { font: inherit; font-size: 13px; font-weight: 600; cursor: pointer;
  color: var(--_failed); background: transparent; border: 1px solid var(--_failed);
  border-radius: 8px; padding: 4px 12px; }
.cancel:disabled { cursor: default; color: var(--_muted); border-color: var(--_line); }
.cancel:focus-visible { outline: 2px solid var(--_accent); outline-offset: 2px; }
.counts { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 8px; padding: 0;
  list-style: none; }
.counts:empty { display: none; }
.count { font-size: 12px; padding: 1px 8px; border-radius: 999px; color: var(--_ink);
  border: 1px solid var(--_count); font-variant-numeric: tabular-nums; }
.count b { color: var(--_count); font-weight: 600; }
${STATES.map((state) => `.count[data-state=${state}] { --_count: var(--_${state}); }`).join('\n')}
.announce { position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; border: 0;
  overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
@media (prefers-reduced-motion: reduce) {
  .fill { transition: none; animation: none !important; } }
`;

  // The top of both cards: names, state badge, progress bar, percent and message.
  const CARD_TOP = `
<div class="card" part="card" data-state="created">
  <div class="top">
    <div class="names"><span class="title" part="title"></span><span class="id" part="id"></span></div>
    <span class="badge" part="badge"></span>
  </div>
  <div class="bar" part="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100">
    <div class="fill" part="fill"></div>
  </div>
  <div class="line" part="line"><span class="percent"></span><span class="message"></span></div>
`;

  const WIDGET_HTML = `${CARD_TOP}  <p class="error" part="error" hidden><b></b><span></span></p>
  <dl class="facts" part="facts">
    <div data-fact="attempts"><dt>attempts</dt><dd></dd></div>
    <div data-fact="retry"><dt>next attempt</dt><dd></dd></div>
    <div data-fact="enqueued"><dt>enqueued</dt><dd></dd></div>
    <div data-fact="started"><dt>started</dt><dd></dd></div>
    <div data-fact="finished"><dt>ended</dt><dd></dd></div>
    <div data-fact="duration"><dt>took</dt><dd></dd></div>
    <div data-fact="eta"><dt>left</dt><dd></dd></div>
  </dl>
  <div class="meta" part="meta"></div>
  <div class="actions" hidden><button class="cancel" part="cancel" type="button">Cancel</button></div>
  <div class="announce" role="status" aria-live="polite" aria-atomic="true"></div>
</div>`;

  const GROUP_HTML = `${CARD_TOP}  <ul class="counts" part="counts" aria-label="jobs by state"></ul>
  <p class="error" part="error" hidden><b></b><span></span></p>
  <div class="announce" role="status" aria-live="polite" aria-atomic="true"></div>
</div>`;

  // The routes' base URL: the folder immortus.js was loaded from, when it is the page's origin.
  const scriptBase = (() => {
    const script = typeof document !== 'undefined' ? document.currentScript : null;
    const match = script && /^(.*)\/immortus\.js(?:[?#].*)?$/.exec(script.src || '');
    return match && sameOrigin(match[1] + '/') ? new URL(match[1] + '/').pathname : null;
  })();

  function parseTime(iso) {
    const time = typeof iso === 'string' ? Date.parse(iso) : NaN;
    return Number.isFinite(time) ? time : null;
  }

  function clockTime(iso) {
    const time = parseTime(iso);
    return time === null ? '—' : new Date(time).toLocaleTimeString();
  }

  function duration(ms) {
    if (!(ms >= 0)) {
      return '—';
    }
    if (ms < 1000) {
      return `${Math.round(ms)} ms`;
    }
    if (ms < 60000) {
      return `${(ms / 1000).toFixed(1)} s`;
    }
    const seconds = Math.round(ms / 1000);
    return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  }

  function roughly(ms) {
    const seconds = Math.max(0, Math.ceil(ms / 1000));
    return seconds < 60 ? `${seconds} s` : `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  }

  function stateOf(body) {
    if (STATES.includes(body.status)) {
      return body.status;
    }
    if (body.completed === true) { // a custom verify endpoint's body
      return body.success === false ? 'failed' : 'finished';
    }
    return 'started';
  }

  function percentOf(body, state) {
    const progress = body.progress;
    const percent = isObject(progress) && Number.isFinite(progress.percent) ? progress.percent : null;
    if (percent === null) {
      return state === 'finished' ? 100 : null;
    }
    return Math.max(0, Math.min(100, percent));
  }

  // What a card says went wrong with a request.
  function problem(error) {
    if (error && error.status) {
      return `the server answered HTTP ${error.status}`;
    }
    return error instanceof ImmortusError && error.cause !== undefined
      ? 'the server could not be reached' : String(error && error.message);
  }

  // What an `immortus:error` event carries: the error answer's body, else one of that shape.
  function errorDetail(error, jobId) {
    if (error && isObject(error.body)) {
      return error.body;
    }
    const name = error && error.name ? String(error.name) : 'Error';
    return {job_id: jobId, error: {type: name, message: String(error && error.message)}};
  }

  // The widgets whose clocks move (duration, time left, next attempt): ticked once a second.
  const ticking = new Set();
  let ticker = null;

  function setTicking(widget, on) {
    if (on) {
      ticking.add(widget);
    } else {
      ticking.delete(widget);
    }
    if (ticking.size > 0 && ticker === null) {
      ticker = setInterval(() => ticking.forEach((each) => each.tick()), 1000);
    } else if (ticking.size === 0 && ticker !== null) {
      clearInterval(ticker);
      ticker = null;
    }
  }

  // The bar, its percent and message line, and what a screen reader says of it (`said`, after
  // the percent). Every card has them.
  function drawBar(nodes, percent, message, said) {
    const whole = percent === null ? null : Math.floor(percent);
    nodes.fill.style.width = `${percent === null ? 0 : percent}%`;
    nodes.percent.textContent = whole === null ? '' : `${whole} %`;
    nodes.message.textContent = message;
    if (whole === null) {
      nodes.bar.removeAttribute('aria-valuenow');
    } else {
      nodes.bar.setAttribute('aria-valuenow', String(whole));
    }
    const spoken = [whole === null ? null : `${whole} %`, ...said];
    nodes.bar.setAttribute('aria-valuetext', spoken.filter(Boolean).join(', '));
  }

  // The error box: `prefix` and the error type's last dotted part, then its message; hidden
  // without an error. Returns the error shown, or null.
  function drawError(nodes, given, prefix) {
    const error = isObject(given) ? given : null;
    nodes.error.hidden = !error;
    if (error) {
      const type = String(error.type || 'Error');
      nodes.error.firstChild.textContent = `${prefix}${type.slice(type.lastIndexOf('.') + 1)}: `;
      nodes.error.lastChild.textContent = String(error.message || '');
      nodes.error.title = type;
    }
    return error;
  }

  let sharedSheet; // one constructed stylesheet for every widget (not subject to a page's CSP)

  function adoptStyles(shadow) {
    if (sharedSheet === undefined) {
      sharedSheet = null;
      try {
        const sheet = new root.CSSStyleSheet();
        sheet.replaceSync(WIDGET_CSS);
        sharedSheet = sheet;
      } catch (error) {
        // no constructable stylesheets: a <style> element below
      }
    }
    if (sharedSheet && 'adoptedStyleSheets' in shadow) {
      shadow.adoptedStyleSheets = [sharedSheet];
    } else {
      const style = document.createElement('style');
      style.textContent = WIDGET_CSS;
      shadow.appendChild(style);
    }
  }

  function defineWidget() {
    /** `<immortus-job job-id job-class token [verify-url] [base-url] [cancellable] [cancel-url]
     *  [label] [transport] [interval] [theme]>`: follows the job while it is in the document. */
    class JobElement extends root.HTMLElement {
      static get observedAttributes() {
        return WIDGET_ATTRIBUTES.concat(['label', 'cancel-url', 'cancellable']);
      }

      constructor() {
        super();
        this.lastBody = null;
        this.lastState = null;
        this.controller = null;
        this.pending = false;
        this.rate = null; // {attempt, time, percent}: the first progress seen in this attempt
        this.finishAt = null; // when the job should end, at the rate it goes
        this.cancelling = false;
      }

      /** The last body shown, or null. */
      get body() {
        return this.lastBody;
      }

      /** The job followed: {job_id, job_class, token} or {verify_job_url}; set to follow another. */
      get job() {
        const url = this.getAttribute('verify-url');
        if (url) {
          return {verify_job_url: url};
        }
        const jobId = this.getAttribute('job-id');
        return jobId ? {job_id: jobId, job_class: this.getAttribute('job-class'),
          token: this.getAttribute('token')} : null;
      }

      set job(info) {
        if (!isObject(info)) {
          throw new TypeError('immortus: a widget needs {job_id, job_class?, token?} or {verify_job_url}');
        }
        const set = (name, value) => (value === undefined || value === null
          ? this.removeAttribute(name) : this.setAttribute(name, String(value)));
        set('verify-url', info.verify_job_url);
        set('job-id', info.job_id);
        set('job-class', info.job_class);
        set('token', info.token);
        if (info.cancel_url !== undefined) {
          set('cancel-url', info.cancel_url);
        }
      }

      connectedCallback() {
        // A `job` set before this class was defined is an own property hiding the accessor.
        if (Object.prototype.hasOwnProperty.call(this, 'job')) {
          const info = this.job;
          delete this.job;
          this.job = info;
        }
        this.parts();
        this.restart();
      }

      disconnectedCallback() {
        this.stopFollowing();
      }

      attributeChangedCallback(name, previous, value) {
        if (previous === value || !this.shadowRoot) {
          return;
        }
        if (WIDGET_ATTRIBUTES.includes(name)) {
          this.restart();
        } else if (this.lastBody) {
          this.show(this.lastBody);
        } else {
          this.showNames();
        }
      }

      // The shadow tree, built once from `template()`; `collect` finds its nodes.
      parts() {
        if (this.nodes) {
          return this.nodes;
        }
        const shadow = this.shadowRoot || this.attachShadow({mode: 'open'});
        adoptStyles(shadow);
        const holder = document.createElement('div');
        holder.innerHTML = this.template(); // a constant: no page data goes through innerHTML
        const card = holder.firstElementChild;
        shadow.appendChild(card);
        const find = (selector) => card.querySelector(selector);
        this.nodes = {
          card, title: find('.title'), id: find('.id'), badge: find('.badge'), bar: find('.bar'),
          fill: find('.fill'), percent: find('.percent'), message: find('.message'),
          error: find('.error'), announce: find('.announce'), ...this.collect(find),
        };
        this.showNames();
        this.show(this.blank());
        this.lastBody = null;
        return this.nodes;
      }

      template() {
        return WIDGET_HTML;
      }

      // The nodes of this kind of card, besides those every card has.
      collect(find) {
        const fact = (name) => find(`[data-fact=${name}]`);
        const cancelButton = find('.cancel');
        cancelButton.addEventListener('click', () => this.cancel());
        return {
          meta: find('.meta'), actions: find('.actions'), cancel: cancelButton,
          facts: Object.fromEntries(['attempts', 'retry', 'enqueued', 'started', 'finished',
            'duration', 'eta'].map((name) => [name, fact(name)])),
        };
      }

      // What the card shows before the first body.
      blank() {
        return {status: 'created', completed: false, progress: null, attempts: 0};
      }

      label() {
        const job = this.lastBody || {};
        return this.getAttribute('label') || job.job_class || this.getAttribute('job-class') || 'Job';
      }

      // The id under the title.
      shownId() {
        return (this.lastBody && this.lastBody.job_id) || this.getAttribute('job-id') || '';
      }

      showNames() {
        const nodes = this.nodes;
        const shown = this.shownId();
        nodes.title.textContent = this.label();
        nodes.id.textContent = shown;
        nodes.id.title = shown;
        nodes.bar.setAttribute('aria-label', `${this.label()} progress`);
      }

      // Coalesce attribute changes (a parser or `job =` sets several): one restart after them.
      restart() {
        if (this.pending) {
          return;
        }
        this.pending = true;
        queueMicrotask(() => {
          this.pending = false;
          this.stopFollowing();
          if (this.isConnected && this.job) {
            this.follow(this.job);
          }
        });
      }

      stopFollowing() {
        if (this.controller) {
          this.controller.abort();
          this.controller = null;
        }
        setTicking(this, false);
      }

      follow(job) {
        const controller = new AbortController();
        this.controller = controller;
        this.rate = null;
        const options = {signal: controller.signal, onProgress: (body) => this.received(body)};
        const base = this.getAttribute('base-url') || scriptBase;
        if (base) {
          options.baseUrl = base;
        }
        if (this.hasAttribute('transport')) {
          options.transport = this.getAttribute('transport');
        }
        if (this.hasAttribute('interval')) {
          options.polling = {interval: Number(this.getAttribute('interval'))};
        }
        let watched;
        try {
          watched = verify(job, options);
        } catch (error) {
          watched = Promise.reject(error);
        }
        watched.then((body) => {
          if (this.controller === controller) {
            this.controller = null;
            const failed = body.success === false ||
              (typeof body.completed === 'number' && body.status !== 'finished');
            this.emit(failed ? 'immortus:failed' : 'immortus:done', body);
          }
        }, (error) => {
          if (this.controller === controller) {
            this.controller = null;
            this.lostTrack(error, job);
          }
        });
      }

      received(body) {
        if (isObject(body)) {
          this.show(body);
          this.emit('immortus:progress', body);
        }
      }

      lostTrack(error, job) {
        const answered = error && isObject(error.body) && STATES.includes(error.body.status);
        if (answered) {
          this.show(error.body); // a 404: the job is unknown, or the page may not see it
        } else {
          this.parts().message.textContent = `stopped following this job: ${problem(error)}`;
          setTicking(this, false);
        }
        const named = job.job_id === undefined ? job.group_id : job.job_id;
        this.emit('immortus:error', errorDetail(error, named === undefined ? null : named));
      }

      emit(type, detail) {
        this.dispatchEvent(new CustomEvent(type, {detail, bubbles: true, composed: true}));
      }

      /** Render `body` (a verify body) without following anything: for bodies got elsewhere. */
      show(body) {
        if (!isObject(body)) {
          throw new TypeError('immortus: show() needs a verify body');
        }
        const nodes = this.parts();
        const now = Date.now();
        const state = stateOf(body);
        this.lastBody = body;
        this.showNames();
        nodes.card.dataset.state = state;
        nodes.badge.textContent = state;

        const percent = percentOf(body, state);
        const progress = isObject(body.progress) ? body.progress : {};
        const said = typeof progress.message === 'string' ? progress.message : '';
        const message = (SAYS_FIRST.has(state) ? STATE_MESSAGES[state] : said) ||
          said || STATE_MESSAGES[state] || '';
        drawBar(nodes, percent, message, [state, progress.message]);
        const error = drawError(nodes, body.error, '');

        const facts = nodes.facts;
        const fact = (name, text) => {
          facts[name].hidden = text === null;
          facts[name].lastChild.textContent = text === null ? '' : text;
        };
        fact('attempts', Number.isFinite(body.attempts) && state !== 'unknown'
          ? String(body.attempts) : null);
        fact('enqueued', body.enqueued_at ? clockTime(body.enqueued_at) : null);
        fact('started', body.started_at ? clockTime(body.started_at) : null);
        fact('finished', body.finished_at ? clockTime(body.finished_at) : null);
        this.estimate(body, state, percent, now);

        nodes.meta.replaceChildren(...Object.keys(body).filter((key) => !RESERVED.has(key))
          .map((key) => {
            const chip = document.createElement('span');
            const value = body[key];
            chip.textContent = `${key} `;
            chip.appendChild(document.createElement('b')).textContent =
              typeof value === 'object' ? JSON.stringify(value) : String(value);
            return chip;
          }));

        const offered = this.hasAttribute('cancel-url') || this.hasAttribute('cancellable') ||
          typeof body.cancel_url === 'string' || body.cancellable === true;
        const open = ['created', 'started', 'retrying'].includes(state);
        nodes.actions.hidden = !(offered && open && body.cancellable !== false);
        if (!open) {
          this.cancelling = false;
        }
        nodes.cancel.disabled = this.cancelling;
        nodes.cancel.textContent = this.cancelling ? 'Cancelling…' : 'Cancel';

        if (this.lastState !== null && this.lastState !== state) {
          const detail = error && error.message ? ` (${error.message})` : '';
          nodes.announce.textContent = `${this.label()}: ${state}${detail}`;
        }
        this.lastState = state;
        this.tick();
        setTicking(this, this.controller !== null && body.completed !== true);
      }

      // The rate of progress in this attempt, from the first body that showed some.
      estimate(body, state, percent, now) {
        this.finishAt = null;
        if (state !== 'started' || percent === null || percent >= 100) {
          return;
        }
        const attempt = body.attempts;
        if (!this.rate || this.rate.attempt !== attempt || percent < this.rate.percent) {
          this.rate = {attempt, time: now, percent};
        } else if (percent > this.rate.percent && now > this.rate.time) {
          const perMs = (percent - this.rate.percent) / (now - this.rate.time);
          this.finishAt = now + (100 - percent) / perMs;
        }
      }

      /** Move the clocks: duration, time left, next attempt (called once a second). */
      tick() {
        const body = this.lastBody;
        if (!body || !this.nodes) {
          return;
        }
        const facts = this.nodes.facts;
        const now = Date.now();
        const set = (name, text) => {
          facts[name].hidden = text === null;
          facts[name].lastChild.textContent = text === null ? '' : text;
        };
        const started = parseTime(body.started_at);
        const finished = parseTime(body.finished_at);
        // While it runs: for how long so far; once it ended: how long it took.
        const state = stateOf(body);
        const running = state === 'started' && finished === null;
        const took = running ? now - started : finished - started;
        set('duration', started === null || (!running && finished === null) ? null : duration(took));
        facts.duration.firstChild.textContent = running ? 'running for' : 'took';
        set('eta', this.finishAt === null ? null : `about ${roughly(this.finishAt - now)}`);
        const retryAt = parseTime(body.retry_at);
        set('retry', state !== 'retrying' || retryAt === null ? null
          : (retryAt > now ? `in ${roughly(retryAt - now)}` : 'due now'));
      }

      /** Ask to cancel the job: `Immortus.cancel` (to `cancel-url` when set), with the page's
       *  CSRF token. The card shows the answer; a refusal says why and brings the button back. */
      async cancel() {
        const body = this.lastBody || {};
        const url = this.getAttribute('cancel-url') || body.cancel_url || null;
        const job = this.job || {};
        const jobId = body.job_id || job.job_id;
        if (this.cancelling || jobId === undefined || jobId === null) {
          return;
        }
        this.cancelling = true;
        this.show(body);
        const options = {url};
        const base = this.getAttribute('base-url') || scriptBase;
        if (base) {
          options.baseUrl = base;
        }
        try {
          const answer = await cancel(
            {job_id: jobId, job_class: body.job_class || job.job_class || null, token: job.token || null},
            options);
          if (isObject(answer.body) && STATES.includes(answer.body.status)) {
            this.show(answer.body); // cancelled (200), still stopping (202), or ended (409)
          }
        } catch (error) {
          this.cancelling = false;
          this.show(this.lastBody || body);
          this.nodes.message.textContent = `could not cancel: ${problem(error)}`;
          this.emit('immortus:error', errorDetail(error, jobId));
        }
      }
    }
    if (!root.customElements.get(WIDGET_TAG)) {
      root.customElements.define(WIDGET_TAG, JobElement);
    }
    return root.customElements.get(WIDGET_TAG);
  }

  const JobElement = typeof root.HTMLElement === 'function' && root.customElements
    ? defineWidget() : null;

  function defineGroupWidget(Base) {
    /** `<immortus-group group-id token [base-url] [label] [transport] [interval] [theme]>`:
     *  follows a group while it is in the document: the job widget's card, with one bar of the
     *  combined progress, "completed / total", the members by state and the first error. */
    class GroupElement extends Base {
      /** The group followed: {group_id, token}; set to follow another. */
      get job() {
        const groupId = this.getAttribute('group-id');
        return groupId ? {group_id: groupId, token: this.getAttribute('token')} : null;
      }

      set job(info) {
        if (!isGroupInfo(info)) {
          throw new TypeError('immortus: a group widget needs {group_id, token?}');
        }
        this.setAttribute('group-id', String(info.group_id));
        if (info.token === undefined || info.token === null) {
          this.removeAttribute('token');
        } else {
          this.setAttribute('token', String(info.token));
        }
      }

      template() {
        return GROUP_HTML;
      }

      collect(find) {
        return {counts: find('.counts')};
      }

      blank() {
        return {status: 'created', total: 0, completed: 0, progress: null, jobs: {}};
      }

      label() {
        return this.getAttribute('label') || 'Group';
      }

      shownId() {
        return (this.lastBody && this.lastBody.group_id) || this.getAttribute('group-id') || '';
      }

      /** Render `body` (a group body) without following anything. */
      show(body) {
        if (!isObject(body)) {
          throw new TypeError('immortus: show() needs a group body');
        }
        const nodes = this.parts();
        const state = STATES.includes(body.status) ? body.status : 'started';
        this.lastBody = body;
        this.showNames();
        nodes.card.dataset.state = state;
        nodes.badge.textContent = state;
        const total = Number.isFinite(body.total) ? body.total : 0;
        const completed = Number.isFinite(body.completed) ? body.completed : 0;
        const percent = isObject(body.progress) && Number.isFinite(body.progress.percent)
          ? Math.max(0, Math.min(100, body.progress.percent)) : null;
        const done = `${completed} / ${total} done`;
        drawBar(nodes, percent, state === 'unknown' ? 'no record of this group' : done, [done, state]);

        const jobs = isObject(body.jobs) ? body.jobs : {};
        nodes.counts.replaceChildren(...STATES.filter((name) => Number(jobs[name]) > 0)
          .map((name) => {
            const count = document.createElement('li');
            count.className = 'count';
            count.dataset.state = name;
            count.setAttribute('part', 'count');
            count.textContent = `${name} `;
            count.appendChild(document.createElement('b')).textContent = String(jobs[name]);
            return count;
          }));

        drawError(nodes, body.error, 'first error, ');
        if (this.lastState !== null && this.lastState !== state) {
          nodes.announce.textContent = `${this.label()}: ${state}, ${done}`;
        }
        this.lastState = state;
      }

      tick() {
        // a group shows no clock
      }

      async cancel() {
        // a group is not cancelled from its card
      }
    }
    if (!root.customElements.get(GROUP_TAG)) {
      root.customElements.define(GROUP_TAG, GroupElement);
    }
    return root.customElements.get(GROUP_TAG);
  }

  const GroupElement = JobElement === null ? null : defineGroupWidget(JobElement);

  /** Show and follow `job` in `element`: an <immortus-job> is set up, else one replaces the
   *  element's children. `options`: {label, cancellable, cancelUrl, baseUrl, transport,
   *  interval, theme}. */
  function mount(element, job, options) {
    return mountAs(WIDGET_TAG, 'mount', element, job, options);
  }

  /** Show and follow a group ({group_id, token}) in `element`: an <immortus-group> is set up,
   *  else one replaces the element's children. `options`: {label, baseUrl, transport,
   *  interval, theme}. */
  function mountGroup(element, group, options) {
    return mountAs(GROUP_TAG, 'mountGroup', element, group, options);
  }

  function mountAs(tag, name, element, job, options) {
    if (JobElement === null) {
      throw new TypeError(`immortus: ${name}() needs a browser with custom elements`);
    }
    if (!(element instanceof root.Element)) {
      throw new TypeError(`immortus: ${name}() needs an element`);
    }
    const given = options || {};
    const widget = element.localName === tag ? element : document.createElement(tag);
    const attributes = {label: given.label, 'cancel-url': given.cancelUrl, 'base-url': given.baseUrl,
      transport: given.transport, interval: given.interval, theme: given.theme,
      cancellable: given.cancellable ? '' : undefined};
    Object.keys(attributes).forEach((name) => {
      if (attributes[name] !== undefined && attributes[name] !== null) {
        widget.setAttribute(name, String(attributes[name]));
      }
    });
    widget.job = job;
    if (widget !== element) {
      element.replaceChildren(widget);
    }
    return widget;
  }

  root.Immortus = Object.freeze({version: VERSION, create, verify, batch, cancel, mount, mountGroup,
    JobElement, GroupElement, ImmortusError});
})(globalThis);
