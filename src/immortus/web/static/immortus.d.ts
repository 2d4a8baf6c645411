// Type declarations of immortus.js (the classic script, global `Immortus`) and immortus.mjs
// (the same client as an ES module: `import Immortus, {create, verify} from ".../immortus.mjs"`).

/** Where a job is in its life: the `status` of a verify body. */
export type JobState =
  | 'created'
  | 'started'
  | 'retrying'
  | 'finished'
  | 'failed'
  | 'cancelled'
  | 'lost'
  | 'unknown';

/** How far a running job has come. */
export interface Progress {
  current: number;
  total: number | null;
  percent: number | null;
  message: string | null;
}

/** Why a job failed (or, in an error answer, why the request failed). */
export interface JobErrorInfo {
  type: string;
  message: string;
}

/** What an enqueue view answers (`render_job_response`), or a custom verify endpoint's URL. */
export type JobInfo =
  | {job_id: string; job_class?: string | null; token?: string | null}
  | {verify_job_url: string};

/** The body of `GET {prefix}/verify/...` (and of each SSE data frame). The job's meta keys are
 *  merged at the top level; the keys below always win. */
export interface VerifyBody {
  job_id: string;
  job_class: string | null;
  status: JobState;
  completed: boolean;
  success: boolean | null;
  progress: Progress | null;
  error: JobErrorInfo | null;
  attempts: number;
  enqueued_at: string | null;
  started_at: string | null;
  finished_at: string | null;
  certain: boolean;
  [meta: string]: unknown;
}

/** What `render_group` hands the page: a group's id and its token. */
export interface GroupInfo {
  group_id: string;
  token?: string | null;
}

/** The body of `GET {prefix}/groups/{group_id}` (and of a group's frames on the stream). It
 *  has ended once `status` is `finished`, `failed` or `cancelled`; `completed` counts the
 *  members that ended. */
export interface GroupBody {
  group_id: string;
  status: JobState;
  total: number;
  completed: number;
  progress: {fraction: number; percent: number} | null;
  jobs: Partial<Record<JobState, number>>;
  error: JobErrorInfo | null;
  updated_at: string | null;
}

/** The least a custom verify endpoint (`verify_job_url`) answers. */
export interface CustomVerifyBody {
  completed: boolean;
  [key: string]: unknown;
}

/** Exponential back-off on network errors (and 503 answers): the n-th failure in a row waits
 *  `min(max, base * 2 ** (n - 1))` ms; the `limit`-th failure in a row rejects. */
export interface RetryOptions {
  /** Failures in a row that reject (default 5; at least 1). */
  limit?: number;
  /** First delay, in ms (default 500). */
  base?: number;
  /** Longest delay, in ms (default 10000). */
  max?: number;
}

export interface VerifyOptions<Body = VerifyBody> {
  /** Where the immortus routes are mounted (default `'/immortus'`). Every job followed under
   *  one base URL shares that base URL's one stream (or one batched poll). */
  baseUrl?: string;
  /** `'auto'` (default): the page's shared stream (`POST {baseUrl}/stream`), or the page's
   *  batched poll (`POST {baseUrl}/verify`) while the server refuses the stream (503 and 429:
   *  for a while; a missing route: for good) or when it failed before any frame;
   *  `'sse'`: the shared stream only (a refusal rejects; a failure is retried with back-off);
   *  `'polling'`: the batched poll only. A `verify_job_url` is always polled on its own. */
  transport?: 'auto' | 'sse' | 'polling';
  /** `interval`: ms between an answer and the next poll (default 500). Jobs polled together
   *  are polled at the shortest interval among them. */
  polling?: {interval?: number};
  /** Called with every body: each stream frame and poll answer (a stream reopened does not
   *  report the same body twice; a poll may), then the final (completed) body once, just
   *  before the promise resolves with it. Not called when it rejects. */
  onProgress?: (body: Body) => void;
  /** Aborting stops following this job (the other jobs of the page are still followed) and
   *  rejects with the signal's reason (an AbortError). */
  signal?: AbortSignal;
  /** Back-off on network errors and 503s; `false`: the first failure rejects. */
  retry?: RetryOptions | false;
}

export interface CreateOptions {
  /** Headers added to (or replacing) the JSON and CSRF headers. */
  headers?: HeadersInit;
  /** The CSRF token to send; by default the page's (meta tag, else `csrftoken` cookie).
   *  `null`: none. It is only sent to the page's own origin, and a POST that carries it never
   *  follows a redirect: a redirect answer rejects with an ImmortusError. */
  csrfToken?: string | null;
  signal?: AbortSignal;
}

export interface BatchOptions extends CreateOptions {
  /** Where the immortus routes are mounted (default `'/immortus'`). */
  baseUrl?: string;
}

export interface CancelOptions extends CreateOptions {
  /** Where the immortus routes are mounted (default `'/immortus'`). */
  baseUrl?: string;
  /** POST here instead of `{baseUrl}/cancel/{job_id}[/{job_class}]` (your own cancel view). */
  url?: string | null;
}

/** What a cancel request answered: `200` the job is cancelled; `202` it was asked to stop
 *  and still runs (its stream or poll shows `cancelled` once it stopped); `409` it had
 *  already ended (`body` says how). `body` is the job's verify body. */
export interface CancelAnswer {
  code: 200 | 202 | 409;
  body: VerifyBody;
}

/** A request answered with an error status (`status` 400, 403, 404, 500, 503...), or could not
 *  be made at all (`status` 0, the network error in `cause`). */
export declare class ImmortusError extends Error {
  constructor(message: string, status: number, body?: unknown, options?: {cause?: unknown});
  readonly name: 'ImmortusError';
  /** The HTTP status, or 0 for a network error. */
  status: number;
  /** The answer's JSON (else its text), or null. */
  body: unknown;
}

/** A real Promise (await, catch and finally work; chained promises are plain Promises) whose
 *  `then` also takes a third, progress callback (as the Ruby gem immortus's promise did). */
export interface ImmortusPromise<T> extends Promise<T> {
  then<R1 = T, R2 = never>(
    onFulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null,
    onRejected?: ((reason: any) => R2 | PromiseLike<R2>) | null,
    onProgress?: ((body: T) => void) | null,
  ): Promise<R1 | R2>;
}

/** POST `data` as JSON (with the page's CSRF token) to an enqueue view; resolve with its JSON. */
export declare function create<Info extends object = JobInfo>(
  url: string | URL,
  data?: unknown,
  options?: CreateOptions,
): Promise<Info>;

/** Watch a job until its body is `completed`; resolve with that body (failed jobs too). */
export declare function verify(
  jobInfo: {job_id: string; job_class?: string | null; token?: string | null},
  options?: VerifyOptions<VerifyBody>,
): ImmortusPromise<VerifyBody>;
export declare function verify<Body extends CustomVerifyBody = CustomVerifyBody>(
  jobInfo: {verify_job_url: string},
  options?: VerifyOptions<Body>,
): ImmortusPromise<Body>;
/** Watch a group until it has ended; resolve with its last body. */
export declare function verify(
  groupInfo: GroupInfo,
  options?: VerifyOptions<GroupBody>,
): ImmortusPromise<GroupBody>;
export declare function verify(
  jobInfo: JobInfo,
  options?: VerifyOptions<VerifyBody | CustomVerifyBody>,
): ImmortusPromise<VerifyBody | CustomVerifyBody>;

/** Ask for many jobs in one request (`POST {base}/verify`); resolve with their bodies in order
 *  (an unknown or forbidden job's body has `status: 'unknown'`). */
export declare function batch(
  jobs: ReadonlyArray<{job_id: string; job_class?: string | null; token?: string | null} | GroupInfo>,
  options?: BatchOptions,
): Promise<Array<VerifyBody | GroupBody>>;

/** Ask the server to cancel a job: `POST {baseUrl}/cancel/{job_id}[/{job_class}]` with
 *  `{token}` as JSON and the page's CSRF token (as `create` sends it: same origin only, never
 *  across a redirect). Resolves with 200, 202 and 409 answers; rejects with an ImmortusError
 *  otherwise: 404 (unknown job or bad token), 405 (the job class does not let pages cancel
 *  its jobs, or its queue cannot), 503, 500, or `status` 0 for a network error. */
export declare function cancel(
  jobInfo: {job_id: string; job_class?: string | null; token?: string | null},
  options?: CancelOptions,
): Promise<CancelAnswer>;

/** What the widget's `immortus:progress`, `immortus:done` and `immortus:failed` events carry:
 *  the verify body; `immortus:error`: the error answer's body (a 404's says `status:
 *  'unknown'`), else `{job_id, error: {type, message}}`. Every event bubbles and is composed. */
export interface JobElementEventMap {
  'immortus:progress': CustomEvent<VerifyBody>;
  'immortus:done': CustomEvent<VerifyBody>;
  'immortus:failed': CustomEvent<VerifyBody>;
  'immortus:error': CustomEvent<{job_id: string | null; error: JobErrorInfo | null; [key: string]: unknown}>;
}

/** What both widgets share: `addEventListener` types the widget's own events (`EventMap`)
 *  and takes any other as usual. */
declare abstract class WidgetElement<EventMap> extends HTMLElement {
  addEventListener<K extends keyof EventMap>(
    type: K,
    listener: (this: this, event: EventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject,
    options?: boolean | AddEventListenerOptions,
  ): void;
}

/** `<immortus-job job-id job-class token>` (or `verify-url`): follows its job with `verify`
 *  while it is in the document, and shows it as a card in its shadow root.
 *
 *  Attributes: `job-id`, `job-class`, `token`, `verify-url` (a custom verify endpoint),
 *  `base-url` (default: where immortus.js was loaded from, else `/immortus`), `label` (the
 *  card's title; default the job class), `cancellable` (a boolean attribute: shows a Cancel
 *  button while the job runs, which calls `Immortus.cancel`; also shown when the body says
 *  `cancellable: true`), `cancel-url` (the same button, posting to this URL instead),
 *  `transport` (`auto`, `sse`, `polling`), `interval` (ms between polls), `theme`
 *  (`light` by default, `dark`, or `auto`: the system's). Parts: card, title, id, badge, bar,
 *  fill, line, error, facts, meta, cancel. */
export declare class JobElement extends WidgetElement<JobElementEventMap> {
  /** The job followed; setting it (re)starts following. */
  get job(): JobInfo | null;
  set job(info: JobInfo & {cancel_url?: string | null});
  /** The last body shown, or null. */
  readonly body: VerifyBody | CustomVerifyBody | null;
  /** Show `body` without following anything (a body the page got elsewhere). */
  show(body: VerifyBody | CustomVerifyBody): void;
  /** Cancel the job with `Immortus.cancel` (to `cancel-url` when set); the card shows the
   *  answer, or says why it was refused. */
  cancel(): Promise<void>;
}

/** What the group widget's events carry: `immortus:progress` at each change of the group's
 *  body, `immortus:done` once it finished, `immortus:failed` once it ended `failed` or
 *  `cancelled`, `immortus:error` as for the job widget. */
export interface GroupElementEventMap {
  'immortus:progress': CustomEvent<GroupBody>;
  'immortus:done': CustomEvent<GroupBody>;
  'immortus:failed': CustomEvent<GroupBody>;
  'immortus:error': CustomEvent<{group_id?: string | null; job_id?: string | null; error: JobErrorInfo | null; [key: string]: unknown}>;
}

/** `<immortus-group group-id token>`: follows a group (on the page's one stream) while it is in
 *  the document: one bar of the combined progress, "completed / total done", the members by
 *  state as small badges, the first error and the state badge.
 *
 *  Attributes: `group-id`, `token`, `base-url`, `label` (default `Group`), `transport`,
 *  `interval`, `theme`. Parts: card, title, id, badge, bar, fill, line, counts, count, error. */
export declare class GroupElement extends WidgetElement<GroupElementEventMap> {
  /** The group followed; setting it (re)starts following. */
  get job(): GroupInfo | null;
  set job(info: GroupInfo);
  /** The last body shown, or null. */
  readonly body: GroupBody | null;
  /** Show `body` without following anything. */
  show(body: GroupBody): void;
}

export interface MountOptions {
  /** The card's title (default: the job class). */
  label?: string;
  /** Show a Cancel button that calls `Immortus.cancel` (the `cancellable` attribute). */
  cancellable?: boolean;
  /** Where the Cancel button POSTs instead of the default cancel route. */
  cancelUrl?: string;
  /** Where the immortus routes are mounted. */
  baseUrl?: string;
  transport?: 'auto' | 'sse' | 'polling';
  /** ms between polls. */
  interval?: number;
  theme?: 'light' | 'dark' | 'auto';
}

/** Show and follow `job` in `element`: an `<immortus-job>` is set up, any other element gets
 *  one in place of its children. Returns the widget. */
export declare function mount(
  element: Element,
  job: JobInfo & {cancel_url?: string | null},
  options?: MountOptions,
): JobElement;

/** Show and follow a group in `element`: an `<immortus-group>` is set up, any other element
 *  gets one in place of its children. `options` as for `mount` (no Cancel button). Returns the
 *  widget. */
export declare function mountGroup(
  element: Element,
  group: GroupInfo,
  options?: Omit<MountOptions, 'cancellable' | 'cancelUrl'>,
): GroupElement;

export declare const version: string;

export interface ImmortusStatic {
  readonly version: string;
  readonly create: typeof create;
  readonly verify: typeof verify;
  readonly batch: typeof batch;
  readonly cancel: typeof cancel;
  readonly mount: typeof mount;
  readonly mountGroup: typeof mountGroup;
  /** The `<immortus-job>` element class (null where there are no custom elements). */
  readonly JobElement: typeof JobElement | null;
  /** The `<immortus-group>` element class (null where there are no custom elements). */
  readonly GroupElement: typeof GroupElement | null;
  readonly ImmortusError: typeof ImmortusError;
}

declare const Immortus: ImmortusStatic;
export default Immortus;

declare global {
  /** Defined by the classic script `immortus.js`. */
  var Immortus: ImmortusStatic;
  interface HTMLElementTagNameMap {
    'immortus-job': JobElement;
    'immortus-group': GroupElement;
  }
  interface HTMLElementEventMap extends JobElementEventMap {}
}
