import type { RateSample } from './types'

/** Value axis ticks from 0: at most `maxTicks` + 1, on 1/2/5 × 10^n steps, covering `peak`. */
export function valueTicks(peak: number, maxTicks = 4): number[] {
  // Rates are keys per second: a step below 1 would only label fractions of a key.
  const span = Number.isFinite(peak) && peak > 1 ? peak : 1
  let step = Math.max(1, 10 ** Math.floor(Math.log10(span / maxTicks)))
  for (const factor of [1, 2, 5, 10]) {
    if (span / (step * factor) <= maxTicks) {
      step *= factor
      break
    }
  }
  const count = Math.max(1, Math.ceil(span / step - 1e-9))
  return Array.from({ length: count + 1 }, (_, index) => index * step)
}

// Steps a person reads as round durations: seconds, then whole minutes, then hours.
const TIME_STEPS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400]

/** Time axis ticks from 0: at most `maxTicks` + 1 of them, on round durations, covering `seconds`. */
export function timeTicks(seconds: number, maxTicks = 5): number[] {
  const span = Math.max(1, seconds)
  const step = TIME_STEPS_S.find((candidate) => span / candidate <= maxTicks) ?? Math.ceil(span / maxTicks / 3600) * 3600
  const count = Math.max(1, Math.ceil(span / step - 1e-9))
  return Array.from({ length: count + 1 }, (_, index) => index * step)
}

/** Keeps at most `limit` points (always the last), so a long test stays cheap to draw. */
export function thin<T>(points: T[], limit: number): T[] {
  if (points.length <= limit || limit < 2) return points
  const stride = Math.ceil(points.length / limit)
  const kept = points.filter((_, index) => index % stride === 0)
  const last = points.at(-1)
  if (last !== undefined && kept.at(-1) !== last) kept.push(last)
  return kept
}

export interface Frame {
  width: number
  height: number
  maxT: number
  maxRate: number
}

/** SVG `points` for one rate line inside a plot of the given size. */
export function polylinePoints(
  samples: RateSample[],
  rate: (sample: RateSample) => number,
  frame: Frame,
): string {
  return samples
    .map((sample) => {
      const x = (sample.t / frame.maxT) * frame.width
      const y = frame.height - (Math.max(0, rate(sample)) / frame.maxRate) * frame.height
      return `${x.toFixed(1)},${y.toFixed(1)}`
    })
    .join(' ')
}
