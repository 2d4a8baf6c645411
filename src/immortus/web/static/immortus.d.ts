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
  /** Where the immortus routes are mounted (default `'/immortus'`). */
  baseUrl?: string;
  /** `'auto'` (default): SSE when `EventSource` exists and no `verify_job_url`, polling after
   *  the stream fails or ends early; `'sse'`: the stream only; `'polling'`: never a stream. */
  transport?: 'auto' | 'sse' | 'polling';
  /** `interval`: ms between an answer and the next poll (default 500). */
  polling?: {interval?: number};
  /** Called with every body that is not completed (each SSE data frame, each poll answer). */
  onProgress?: (body: Body) => void;
  /** Aborting stops the requests and rejects with the signal's reason (an AbortError). */
  signal?: AbortSignal;
  /** Back-off on network errors; `false`: the first failure rejects. */
  retry?: RetryOptions | false;
}

export interface CreateOptions {
  /** Headers added to (or replacing) the JSON and CSRF headers. */
  headers?: HeadersInit;
  /** The CSRF token to send; by default the page's (meta tag, else `csrftoken` cookie).
   *  `null`: none. It is only sent to the page's own origin. */
  csrfToken?: string | null;
  signal?: AbortSignal;
}

export interface BatchOptions extends CreateOptions {
  /** Where the immortus routes are mounted (default `'/immortus'`). */
  baseUrl?: string;
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
 *  `then` also takes the seed's third, progress callback. */
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
export declare function verify(
  jobInfo: JobInfo,
  options?: VerifyOptions<VerifyBody | CustomVerifyBody>,
): ImmortusPromise<VerifyBody | CustomVerifyBody>;

/** Ask for many jobs in one request (`POST {base}/verify`); resolve with their bodies in order
 *  (an unknown or forbidden job's body has `status: 'unknown'`). */
export declare function batch(
  jobs: ReadonlyArray<{job_id: string; job_class?: string | null; token?: string | null}>,
  options?: BatchOptions,
): Promise<VerifyBody[]>;

export declare const version: string;

export interface ImmortusStatic {
  readonly version: string;
  readonly create: typeof create;
  readonly verify: typeof verify;
  readonly batch: typeof batch;
  readonly ImmortusError: typeof ImmortusError;
}

declare const Immortus: ImmortusStatic;
export default Immortus;

declare global {
  /** Defined by the classic script `immortus.js`. */
  var Immortus: ImmortusStatic;
}
