import { describe, expect, it } from 'vitest'
import {
  clampPercent,
  formatAxisTime,
  consumerShares,
  formatElapsed,
  formatMs,
  formatPercent,
  formatRate,
  generationEstimate,
  stateTone,
  summarizeVerdict,
} from './format'

describe('progress', () => {
  it('clamps to 0–100 and tolerates missing values', () => {
    expect(clampPercent(-3)).toBe(0)
    expect(clampPercent(130)).toBe(100)
    expect(clampPercent(null)).toBe(0)
    expect(clampPercent(Number.NaN)).toBe(0)
    expect(clampPercent(49.8)).toBe(49.8)
  })

  it('never rounds an unfinished test up to 100 %', () => {
    expect(formatPercent(99.96)).toBe('99.9 %')
    expect(formatPercent(100)).toBe('100.0 %')
    expect(formatPercent(49.85)).toBe('49.8 %')
    expect(formatPercent(0)).toBe('0.0 %')
  })
})

describe('times and rates', () => {
  it('formats elapsed time', () => {
    expect(formatElapsed(0.52)).toBe('0.5 s')
    expect(formatElapsed(65)).toBe('1 min 05 s')
    expect(formatElapsed(3725)).toBe('1 h 02 min')
  })

  it('formats milliseconds in a readable unit', () => {
    expect(formatMs(2.25)).toBe('2.3 ms')
    expect(formatMs(95)).toBe('95 ms')
    expect(formatMs(5000)).toBe('5.0 s')
    expect(formatMs(120_000)).toBe('2.0 min')
    expect(formatMs(86_400_000)).toBe('24.0 h')
  })

  it('formats rates as keys/s', () => {
    expect(formatRate(980.4)).toBe('980 keys/s')
    expect(formatRate(12345)).toBe('12,345 keys/s')
    expect(formatRate(-1)).toBe('0 keys/s')
  })

  it('estimates generation time', () => {
    expect(generationEstimate(1000, 1)).toBe('about 1.0 s of generation')
    expect(generationEstimate(1000, 0)).toBe('written as fast as Redis accepts them')
  })
})

describe('summarizeVerdict', () => {
  it('says exactly once when it was', () => {
    const summary = summarizeVerdict(
      { exactly_once: true, expected: 1000, consumed: 1000, missing: 0, duplicates: 0, dead_letters: 0 },
      'finished',
    )
    expect(summary).toEqual({
      ok: true,
      headline: 'Every key was consumed exactly once',
      detail: '1,000 consumed of 1,000 keys generated.',
    })
  })

  it('counts missing and duplicated keys', () => {
    const summary = summarizeVerdict(
      { exactly_once: false, expected: 1000, consumed: 998, missing: 3, duplicates: 1, dead_letters: 0 },
      'finished',
    )
    expect(summary.ok).toBe(false)
    expect(summary.headline).toBe('3 keys missing, 1 key consumed more than once')
  })

  it('explains a stopped test', () => {
    const summary = summarizeVerdict(
      { exactly_once: true, expected: 512, consumed: 512, missing: 0, duplicates: 0, dead_letters: 0 },
      'stopped',
    )
    expect(summary.detail).toContain('stopped early')
  })

  it('explains an interrupted test', () => {
    const summary = summarizeVerdict(
      { exactly_once: false, expected: 10, consumed: 9, missing: 1, duplicates: 0, dead_letters: 0 },
      'interrupted',
    )
    expect(summary.headline).toBe('1 key missing')
    expect(summary.detail).toContain('generator restarted')
  })
})

describe('states and consumers', () => {
  it('gives each state a tone', () => {
    expect(stateTone('generating')).toBe('active')
    expect(stateTone('finished')).toBe('good')
    expect(stateTone('interrupted')).toBe('bad')
  })

  it('orders consumers naturally and computes shares', () => {
    const shares = consumerShares({ 'consumer-10': 25, 'consumer-2': 25, 'consumer-1': 50 })
    expect(shares.map((entry) => entry.name)).toEqual(['consumer-1', 'consumer-2', 'consumer-10'])
    expect(shares.map((entry) => entry.share)).toEqual([50, 25, 25])
    expect(consumerShares({})).toEqual([])
  })
})

describe('axis labels', () => {
  it('reads as round durations', () => {
    expect(formatAxisTime(0)).toBe('0 s')
    expect(formatAxisTime(45)).toBe('45 s')
    expect(formatAxisTime(120)).toBe('2 min')
    expect(formatAxisTime(90)).toBe('1:30')
    expect(formatAxisTime(7200)).toBe('2 h')
  })
})
