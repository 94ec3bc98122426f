// Shapes of the generator's API, as documented in docs/API.md; held to the generator's own
// (src/generator/documents.py) by tests/generator/test_documents.py.

export interface TestConfig {
  num_keys: number
  key_delay: number
  key_ttl: number
  dedup_window: number
}

export type TestState =
  | 'idle'
  | 'starting'
  | 'generating'
  | 'draining'
  | 'finished'
  | 'stopped'
  | 'interrupted'
  | 'failed'

export interface Verdict {
  exactly_once: boolean
  expected: number
  consumed: number
  missing: number
  duplicates: number
  dead_letters: number
}

export interface Latency {
  p50: number
  p95: number
  p99: number
  count: number
}

/** Why the generator cannot use Redis right now (`cause`: unreachable, out of memory, …). */
export interface RedisProblem {
  cause: string
  message: string
  since: number | null
}

export interface Status {
  is_running: boolean
  state: TestState
  test_id: string | null
  config: TestConfig | null
  generated: number
  consumed: number
  in_flight: number
  progress: number
  generation_rate: number
  consumption_rate: number
  elapsed_s: number
  started_at: number | null
  finished_at: number | null
  consumers: Record<string, number>
  /** Consumers holding a listener slot now (absent from older generators). */
  listeners?: string[]
  latency_ms: Latency | null
  /** Messages waiting in the work queue. */
  pending: number
  /** Claims published (or about to be) and not yet completed. */
  claimed_in_flight: number
  /** Keys the sweepers recovered (no listener heard them, or their claim ran out). */
  recovered: number
  redelivered: number
  dead_letters: number
  /** The latest dead letters, newest first (absent from older generators). */
  recent_dead_letters?: DeadLetter[]
  verdict: Verdict | null
  /** Why a test ended without a verdict, or was interrupted or failed. */
  reason: string | null
  /** Whether start and stop need a bearer token. */
  auth_required: boolean
  redis_problem: RedisProblem | null
  /** The rates measured over the interval this status closes; null when nothing was measured. */
  rate_sample: RateSample | null
}

/** A key whose handler failed on every delivery, as the consumers recorded it. */
export interface DeadLetter {
  key: string
  test_id: string
  claim_id: string
  attempts: number
  error: string
  at: number
}

/** One point of the keys/s chart; `t` is seconds since the test started. */
export interface RateSample {
  t: number
  generation_rate: number
  consumption_rate: number
}

export interface HistorySample extends RateSample {
  state: TestState
  generated: number
  consumed: number
}
