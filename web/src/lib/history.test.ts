import { describe, expect, it } from 'vitest'
import { appendStatus, EMPTY_SERIES, seedFromHistory } from './history'
import { isStale } from './status'
import type { HistorySample, Status } from './types'
import { makeStatus } from '../test/fakes'

/** A pushed status whose interval measured the given rates (both 0 unless given). */
function status(
  overrides: Partial<Status> & { measured?: { generation?: number; consumption?: number } } = {},
): Status {
  const { measured, ...rest } = overrides
  const base = makeStatus({
    is_running: true,
    state: 'generating',
    test_id: 't-1',
    config: { num_keys: 1000, key_delay: 1, key_ttl: 100, dedup_window: 5000 },
    started_at: 1,
    ...rest,
  })
  return {
    ...base,
    rate_sample:
      'rate_sample' in rest
        ? (rest.rate_sample ?? null)
        : {
            t: base.elapsed_s,
            generation_rate: measured?.generation ?? 0,
            consumption_rate: measured?.consumption ?? 0,
          },
  }
}

const sample = (t: number, rate = 100): HistorySample => ({
  t,
  state: 'generating',
  generated: 0,
  consumed: 0,
  generation_rate: rate,
  consumption_rate: rate,
})

describe('rate series', () => {
  it('appends one point per status event', () => {
    let series = appendStatus(EMPTY_SERIES, status({ elapsed_s: 1, measured: { generation: 900 } }))
    series = appendStatus(series, status({ elapsed_s: 2, measured: { generation: 950 } }))
    expect(series.testId).toBe('t-1')
    expect(series.samples.map((s) => [s.t, s.generation_rate])).toEqual([
      [1, 900],
      [2, 950],
    ])
  })

  it('keeps the final status even when it comes soon after the previous one', () => {
    let series = appendStatus(EMPTY_SERIES, status({ elapsed_s: 2.1 }))
    series = appendStatus(series, status({ elapsed_s: 2.5, measured: { consumption: 299 }, state: 'finished' }))
    expect(series.samples.map((s) => s.consumption_rate)).toEqual([0, 299])
  })

  it("plots what each interval measured, never an ended test's averages", () => {
    // A 30,000-key burst: generation stopped after a second; later intervals measured 0.
    let series = appendStatus(EMPTY_SERIES, status({ elapsed_s: 1, measured: { generation: 30000 } }))
    series = appendStatus(series, status({ elapsed_s: 2, measured: { consumption: 15000 } }))
    series = appendStatus(series, status({ elapsed_s: 3, measured: { consumption: 15000 } }))
    const ended = status({
      elapsed_s: 3.4,
      state: 'finished',
      is_running: false,
      generation_rate: 34000, // the average, for the figures
      consumption_rate: 8800,
      measured: { generation: 0, consumption: 0 },
    })
    series = appendStatus(series, ended)
    expect(series.samples.map((s) => s.generation_rate)).toEqual([30000, 0, 0, 0])
    // A status with nothing measured (a fetched one) adds no point.
    expect(appendStatus(series, status({ elapsed_s: 9, rate_sample: null }))).toBe(series)
  })

  it('ignores repeats of a finished test and idle states', () => {
    let series = appendStatus(EMPTY_SERIES, status({ elapsed_s: 3, state: 'finished', is_running: false }))
    series = appendStatus(series, status({ elapsed_s: 3, state: 'finished', is_running: false }))
    expect(series.samples).toHaveLength(1)
    expect(appendStatus(series, status({ state: 'idle', test_id: null }))).toBe(series)
  })

  it('starts over for a new test', () => {
    const first = appendStatus(EMPTY_SERIES, status({ elapsed_s: 5 }))
    const second = appendStatus(first, status({ test_id: 't-2', elapsed_s: 0.4 }))
    expect(second).toEqual({ testId: 't-2', samples: [{ t: 0.4, generation_rate: 0, consumption_rate: 0 }] })
  })

  it('seeds from history and keeps newer live points', () => {
    let live = appendStatus(EMPTY_SERIES, status({ elapsed_s: 1.5 }))
    live = appendStatus(live, status({ elapsed_s: 2.4 }))
    const seeded = seedFromHistory(live, 't-1', [sample(2), sample(1)])
    expect(seeded.samples.map((s) => s.t)).toEqual([1, 2, 2.4])
  })

  it('drops live points of another test when seeding', () => {
    const live = appendStatus(EMPTY_SERIES, status({ test_id: 'old', elapsed_s: 9 }))
    expect(seedFromHistory(live, 't-1', [sample(1)]).samples.map((s) => s.t)).toEqual([1])
  })
})

describe('isStale', () => {
  it('rejects an older moment of the same test only', () => {
    const current = status({ elapsed_s: 5 })
    expect(isStale(status({ elapsed_s: 4 }), current)).toBe(true)
    expect(isStale(status({ elapsed_s: 5 }), current)).toBe(false)
    expect(isStale(status({ elapsed_s: 0, test_id: 't-2' }), current)).toBe(false)
    expect(isStale(status(), null)).toBe(false)
  })
})
