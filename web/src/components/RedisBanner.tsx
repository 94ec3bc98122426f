import type { RedisProblem } from '../lib/types'
import { formatElapsed } from '../lib/format'

const HEADLINES: Record<string, string> = {
  unreachable: 'Redis is unreachable',
  'out of memory': 'Redis is out of memory',
  authentication: 'Redis refused the credentials',
  loading: 'Redis is loading its data',
  'read-only': 'Redis is read-only',
  'cannot save': 'Redis cannot save its data',
}

/** What the generator says is wrong with Redis; the test waits and goes on by itself once fixed. */
export function RedisBanner({ problem, now }: { problem: RedisProblem | null; now: number }) {
  if (!problem) return null
  const headline = HEADLINES[problem.cause] ?? `Redis: ${problem.cause}`
  const lasting = problem.since ? ` for ${formatElapsed(Math.max(0, now - problem.since))}` : ''
  return (
    <div
      role="alert"
      data-testid="redis-problem"
      data-cause={problem.cause}
      className="rounded-lg border border-amber-300 bg-amber-50 px-4 py-3 text-amber-900"
    >
      <p className="font-semibold">
        {headline}
        {lasting}
      </p>
      <p className="text-sm">{problem.message}</p>
      <p className="text-sm">Tests wait for it and go on by themselves once it is resolved.</p>
    </div>
  )
}
