import type { HistorySample, RateSample, Status } from './types'

/** The keys/s series of one test: seeded from /api/history, extended by each status event. */
export interface RateSeries {
  testId: string | null
  samples: RateSample[]
}

export const EMPTY_SERIES: RateSeries = { testId: null, samples: [] }

function toSample(sample: RateSample): RateSample {
  return {
    t: sample.t,
    generation_rate: sample.generation_rate,
    consumption_rate: sample.consumption_rate,
  }
}

/** Replaces the series with the server's history, keeping live points newer than it. */
export function seedFromHistory(
  series: RateSeries,
  testId: string | null,
  history: HistorySample[],
): RateSeries {
  const seeded = history
    .filter((sample) => Number.isFinite(sample.t))
    .map(toSample)
    .sort((a, b) => a.t - b.t)
  const lastSeeded = seeded.at(-1)?.t ?? -Infinity
  const live = series.testId === testId ? series.samples.filter((s) => s.t > lastSeeded) : []
  return { testId, samples: [...seeded, ...live] }
}

/**
 * Adds the point a status event carries; a new test id starts a new series.
 *
 * Only `rate_sample` is plotted: the rates measured over that one interval. The status's own
 * rates of an ended test are its averages, which would draw a spike that never happened.
 */
export function appendStatus(series: RateSeries, status: Status): RateSeries {
  if (!status.test_id || status.state === 'idle') return series
  const base = series.testId === status.test_id ? series : { testId: status.test_id, samples: [] }
  const sample = status.rate_sample
  if (!sample || !Number.isFinite(sample.t)) return base
  const last = base.samples.at(-1)
  // A finished test repeats its last status every second: same elapsed time, no new point.
  if (last && sample.t <= last.t) return base
  return { testId: base.testId, samples: [...base.samples, toSample(sample)] }
}
