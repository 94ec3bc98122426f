import type { Status, TestState, Verdict } from './types'

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 })
const oneDecimal = new Intl.NumberFormat('en-US', {
  minimumFractionDigits: 1,
  maximumFractionDigits: 1,
})

const compact = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 })

export function formatCount(value: number): string {
  return integer.format(value)
}

/** Axis labels: 1,500 reads as "1.5K". */
export function formatCompact(value: number): string {
  return compact.format(value)
}

export function formatRate(keysPerSecond: number): string {
  return `${integer.format(Math.max(0, keysPerSecond))} keys/s`
}

/** 0–100, one decimal, never NaN: the server's `progress` can be missing before a test. */
export function clampPercent(value: number | null | undefined): number {
  if (value === null || value === undefined || !Number.isFinite(value)) return 0
  return Math.min(100, Math.max(0, value))
}

export function formatPercent(value: number): string {
  const clamped = clampPercent(value)
  // 99.96 would round to "100.0 %" while keys are still missing; only a full run says 100.
  const shown = clamped < 100 ? Math.min(Math.floor(clamped * 10) / 10, 99.9) : 100
  return `${oneDecimal.format(shown)} %`
}

/** Elapsed seconds as "4.2 s", "1 min 05 s" or "1 h 02 min". */
export function formatElapsed(seconds: number): string {
  const s = Math.max(0, seconds)
  if (s < 60) return `${oneDecimal.format(s)} s`
  const whole = Math.floor(s)
  if (whole < 3600) {
    const minutes = Math.floor(whole / 60)
    return `${minutes} min ${String(whole % 60).padStart(2, '0')} s`
  }
  const hours = Math.floor(whole / 3600)
  return `${hours} h ${String(Math.floor((whole % 3600) / 60)).padStart(2, '0')} min`
}

/** A time-axis label: "45 s", "2 min", "1:30", "1 h". */
export function formatAxisTime(seconds: number): string {
  if (seconds < 60) return `${Math.round(seconds * 10) / 10} s`
  if (seconds % 3600 === 0) return `${seconds / 3600} h`
  if (seconds % 60 === 0) return `${seconds / 60} min`
  const minutes = Math.floor(seconds / 60)
  return `${minutes}:${String(Math.round(seconds % 60)).padStart(2, '0')}`
}

/** A duration in milliseconds, in the unit a person reads fastest. */
export function formatMs(ms: number): string {
  if (ms < 1000) return `${ms < 10 ? oneDecimal.format(ms) : integer.format(ms)} ms`
  if (ms < 60_000) return `${oneDecimal.format(ms / 1000)} s`
  if (ms < 3_600_000) return `${oneDecimal.format(ms / 60_000)} min`
  return `${oneDecimal.format(ms / 3_600_000)} h`
}

const STATE_LABELS: Record<TestState, string> = {
  idle: 'Idle',
  starting: 'Starting',
  generating: 'Generating',
  draining: 'Draining',
  finished: 'Finished',
  stopped: 'Stopped',
  interrupted: 'Interrupted',
  failed: 'Failed',
}

export function stateLabel(state: TestState): string {
  return STATE_LABELS[state] ?? state
}

export type Tone = 'neutral' | 'active' | 'good' | 'bad' | 'warn'

export function stateTone(state: TestState): Tone {
  switch (state) {
    case 'starting':
    case 'generating':
    case 'draining':
      return 'active'
    case 'finished':
      return 'good'
    case 'stopped':
      return 'warn'
    case 'interrupted':
    case 'failed':
      return 'bad'
    default:
      return 'neutral'
  }
}

export interface VerdictSummary {
  ok: boolean
  headline: string
  detail: string
}

function plural(count: number, one: string, many: string): string {
  return `${formatCount(count)} ${count === 1 ? one : many}`
}

/** What the end of a test means, in one line a person can read at a glance. */
export function summarizeVerdict(verdict: Verdict, state: TestState): VerdictSummary {
  const consumedOf = `${formatCount(verdict.consumed)} consumed of ${plural(verdict.expected, 'key', 'keys')} generated`
  const context =
    state === 'stopped'
      ? ' (test stopped early; only generated keys count)'
      : state === 'interrupted'
        ? ' (the generator restarted during the test)'
        : ''
  if (verdict.exactly_once) {
    return {
      ok: true,
      headline:
        verdict.expected === 0
          ? 'No keys were generated'
          : `Every key was consumed exactly once`,
      detail: `${consumedOf}${context}.`,
    }
  }
  const problems: string[] = []
  if (verdict.missing > 0) problems.push(`${plural(verdict.missing, 'key', 'keys')} missing`)
  if (verdict.duplicates > 0)
    problems.push(`${plural(verdict.duplicates, 'key', 'keys')} consumed more than once`)
  return {
    ok: false,
    headline: problems.length > 0 ? problems.join(', ') : 'Not exactly once',
    detail: `${consumedOf}${context}.`,
  }
}

/** Roughly how long generation will take, for the hint under the form. */
export function generationEstimate(numKeys: number, keyDelayMs: number): string {
  if (keyDelayMs === 0) return 'written as fast as Redis accepts them'
  return `about ${formatMs(numKeys * keyDelayMs)} of generation`
}

/** The share each consumer took, sorted by name with numbers in natural order. */
export function consumerShares(
  consumers: Status['consumers'],
): { name: string; count: number; share: number }[] {
  const entries = Object.entries(consumers ?? {})
  const total = entries.reduce((sum, [, count]) => sum + count, 0)
  return entries
    .sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }))
    .map(([name, count]) => ({ name, count, share: total > 0 ? (count / total) * 100 : 0 }))
}
