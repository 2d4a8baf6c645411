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
  // What an `event: error` frame's body says, as the HTTP status verify would have answered.
  const ERROR_STATUS = {InvalidInput: 400, StoreUnavailable: 503, StrategyError: 500, ServerError: 500};

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

  function jsonHeaders(extra, url, csrfToken) {
    const headers = new Headers({'Content-Type': 'application/json', Accept: 'application/json'});
    const token = csrfToken === undefined ? pageCsrfToken() : csrfToken;
    if (token && sameOrigin(url)) { // never hand the token to another origin
      headers.set('X-CSRFToken', token);
      headers.set('X-CSRF-Token', token);
    }
    new Headers(extra || {}).forEach((value, name) => headers.set(name, value));
    return headers;
  }

  // One HTTP exchange: {status, ok, body} (body: the JSON, else the text, else null).
  // Rejects with fetch's own error when the request cannot be made or its body read.
  async function exchange(url, init) {
    const response = await fetch(url, init);
    const text = await response.text();
    let body = null;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch (error) {
        body = text;
      }
    }
    return {status: response.status, ok: response.ok, body};
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
  async function postJSON(url, data, options) {
    const signal = options.signal;
    let answer;
    try {
      answer = await exchange(url, {
        method: 'POST',
        headers: jsonHeaders(options.headers, url, options.csrfToken),
        body: JSON.stringify(data === undefined ? {} : data),
        credentials: 'same-origin',
        cache: 'no-store',
        signal,
      });
    } catch (error) {
      throw signal && signal.aborted ? abortReason(signal) : networkError('POST', url, error);
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

  /** One verify: polls or listens until the job is completed, the signal aborts, or it fails. */
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
      if (typeof jobInfo.verify_job_url === 'string') {
        this.pollUrl = jobInfo.verify_job_url;
        this.streamUrl = null;
      } else if (typeof jobInfo.job_id === 'string' || typeof jobInfo.job_id === 'number') {
        const base = baseUrlOf(options);
        this.pollUrl = jobPath(base, 'verify', jobInfo);
        this.streamUrl = jobPath(base, 'stream', jobInfo);
      } else {
        throw new TypeError('immortus: verify() needs a job_id or a verify_job_url');
      }
      const canStream = this.streamUrl !== null && typeof root.EventSource === 'function';
      if (this.transport === 'sse' && !canStream) {
        throw new TypeError(this.streamUrl === null
          ? 'immortus: a verify_job_url is polled; transport "sse" needs a job_id'
          : 'immortus: transport "sse" needs EventSource, which this browser lacks');
      }
      this.streaming = this.transport !== 'polling' && canStream;
      this.failures = 0; // network failures in a row
      this.finished = false;
      this.timer = null;
      this.source = null;
      this.request = null; // the AbortController of the fetch in flight
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
      if (this.streaming) {
        this.openStream();
      } else {
        this.poll();
      }
    }

    finish(body) {
      this.stop();
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
      this.closeStream();
      if (this.request) {
        this.request.abort();
        this.request = null;
      }
      if (this.signal) {
        this.signal.removeEventListener('abort', this.onAbort);
      }
    }

    progress(body) {
      this.sink.progress(body);
    }

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
      this.failures += 1;
      if (this.failures >= this.retry.limit) {
        this.fail(error);
        return;
      }
      const delay = Math.min(this.retry.max, this.retry.base * 2 ** (this.failures - 1));
      this.later(next, delay);
    }

    // GET the verify URL once; `answered(body)` gets a 2xx JSON body; other outcomes are
    // handled here (a 503 or a network error retries `next`, another status rejects).
    async fetchBody(next, answered) {
      const request = new AbortController();
      this.request = request;
      let answer;
      try {
        answer = await exchange(this.pollUrl, {
          headers: {Accept: 'application/json'},
          credentials: 'same-origin',
          cache: 'no-store',
          signal: request.signal,
        });
      } catch (error) {
        if (!this.finished) {
          this.networkFailure(networkError('GET', this.pollUrl, error), next);
        }
        return;
      } finally {
        if (this.request === request) {
          this.request = null;
        }
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
      } else if (answer.body.completed === true) {
        this.finish(answer.body);
      } else {
        answered(answer.body);
      }
    }

    poll() {
      const next = () => this.poll();
      this.fetchBody(next, (body) => {
        this.failures = 0;
        this.progress(body);
        this.later(next, this.interval); // measured from this answer, not from the request
      });
    }

    openStream() {
      const source = new root.EventSource(this.streamUrl);
      let delivered = false;
      this.source = source;
      source.onmessage = (event) => {
        let body = null;
        try {
          body = JSON.parse(event.data);
        } catch (error) {
          // not a verify body: ignored below
        }
        if (this.source !== source || !isObject(body)) {
          return;
        }
        delivered = true;
        this.failures = 0;
        if (body.completed === true) {
          this.finish(body);
        } else {
          this.progress(body);
        }
      };
      source.addEventListener('error', (event) => {
        if (this.source !== source) {
          return;
        }
        if (typeof event.data === 'string') {
          this.errorFrame(event.data);
        } else {
          this.streamBroken(delivered);
        }
      });
    }

    closeStream() {
      if (this.source) {
        this.source.close();
        this.source = null;
      }
    }

    // An `event: error` frame: the body verify answers with its error status.
    errorFrame(data) {
      let body = null;
      try {
        body = JSON.parse(data);
      } catch (error) {
        // kept as null
      }
      const type = isObject(body) && isObject(body.error) ? body.error.type : null;
      if (type === 'StoreUnavailable') {
        return; // the server keeps the stream open and polls its store with back-off
      }
      const status = ERROR_STATUS[type] || (isObject(body) && body.status === 'unknown' ? 404 : 500);
      this.fail(httpError('GET', this.streamUrl, {status, body}));
    }

    // The stream failed or ended without a completed frame.
    streamBroken(delivered) {
      this.closeStream();
      if (this.transport === 'auto') {
        this.streaming = false;
        this.poll(); // for good: a page that cannot stream is polled
        return;
      }
      // 'sse': one verify request tells a refused stream (404...) or a completed job from a
      // network failure; then the stream is reopened after back-off.
      const reopen = () => this.openStream();
      if (delivered) {
        this.failures = 0;
      }
      this.fetchBody(reopen, () => this.networkFailure(
        new ImmortusError(`immortus: the event stream ${this.streamUrl} failed`, 0, null), reopen));
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

  /** Ask for many jobs in one request: resolve with their verify bodies, in order. */
  async function batch(jobs, options) {
    const given = options || {};
    if (!Array.isArray(jobs)) {
      throw new TypeError('immortus: batch() needs an array of {job_id, job_class?, token?}');
    }
    const items = jobs.map((job) => {
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

  root.Immortus = Object.freeze({version: VERSION, create, verify, batch, ImmortusError});
})(globalThis);
