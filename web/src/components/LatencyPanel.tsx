import { formatCount, formatMs } from '../lib/format'
import type { Latency } from '../lib/types'

export function LatencyPanel({ latency }: { latency: Latency | null }) {
  if (!latency) {
    return <p className="text-sm text-slate-500">Appears once keys are consumed.</p>
  }
  const percentiles: [string, number][] = [
    ['p50', latency.p50],
    ['p95', latency.p95],
    ['p99', latency.p99],
  ]
  return (
    <div data-testid="latency-values">
      <dl className="grid grid-cols-3 gap-2">
        {percentiles.map(([name, value]) => (
          <div key={name} className="rounded-lg bg-slate-50 px-3 py-2 text-center">
            <dt className="text-xs font-medium text-slate-500 uppercase">{name}</dt>
            <dd data-testid={`latency-${name}`} className="font-mono text-lg font-semibold tabular-nums">
              {formatMs(value)}
            </dd>
          </div>
        ))}
      </dl>
      <p className="mt-2 text-xs text-slate-500">
        From each key's TTL deadline to its consumption, over {formatCount(latency.count)} keys.
      </p>
    </div>
  )
}
