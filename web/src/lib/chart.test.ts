import { describe, expect, it } from 'vitest'
import { polylinePoints, thin, timeTicks, valueTicks } from './chart'

describe('chart scales', () => {
  it('puts rate ticks on round numbers', () => {
    expect(valueTicks(0)).toEqual([0, 1])
    expect(valueTicks(210)).toEqual([0, 100, 200, 300])
    expect(valueTicks(980)).toEqual([0, 500, 1000])
    expect(valueTicks(1000)).toEqual([0, 500, 1000])
    expect(valueTicks(1200)).toEqual([0, 500, 1000, 1500])
    expect(valueTicks(4000)).toEqual([0, 1000, 2000, 3000, 4000])
  })

  it('thins long series but keeps the last point', () => {
    const points = Array.from({ length: 1001 }, (_, index) => index)
    const kept = thin(points, 100)
    expect(kept.length).toBeLessThanOrEqual(101)
    expect(kept.at(-1)).toBe(1000)
    expect(thin([1, 2, 3], 100)).toEqual([1, 2, 3])
  })

  it('maps samples into the plot, y growing downwards', () => {
    const frame = { width: 100, height: 50, maxT: 10, maxRate: 1000 }
    const points = polylinePoints(
      [
        { t: 0, generation_rate: 0, consumption_rate: 0 },
        { t: 10, generation_rate: 1000, consumption_rate: 500 },
      ],
      (sample) => sample.consumption_rate,
      frame,
    )
    expect(points).toBe('0.0,50.0 100.0,25.0')
  })
})

describe('time axis', () => {
  it('puts ticks on round durations', () => {
    expect(timeTicks(0)).toEqual([0, 1])
    expect(timeTicks(3.6)).toEqual([0, 1, 2, 3, 4])
    expect(timeTicks(12)).toEqual([0, 5, 10, 15])
    expect(timeTicks(200)).toEqual([0, 60, 120, 180, 240])
    expect(timeTicks(200, 3)).toEqual([0, 120, 240])
  })
})
