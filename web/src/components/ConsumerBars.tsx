import { consumerShares, formatCount } from '../lib/format'
import type { Status } from '../lib/types'

export function ConsumerBars({ consumers }: { consumers: Status['consumers'] }) {
  const shares = consumerShares(consumers)
  if (shares.length === 0) {
    return <p className="text-sm text-slate-500">No consumer has taken a key yet.</p>
  }
  const largest = Math.max(1, ...shares.map((entry) => entry.count))
  return (
    <ul className="space-y-2" data-testid="consumer-bars">
      {shares.map(({ name, count, share }) => (
        <li
          key={name}
          data-testid="consumer-bar"
          data-consumer={name}
          data-count={count}
          className="grid grid-cols-[minmax(5.5rem,auto)_1fr_auto] items-center gap-3 text-sm"
        >
          <span className="truncate font-mono text-slate-700" title={name}>
            {name}
          </span>
          <span
            className="h-3 overflow-hidden rounded bg-slate-100"
            role="meter"
            aria-label={`${name} share of consumed keys`}
            aria-valuemin={0}
            aria-valuemax={100}
            aria-valuenow={Number(share.toFixed(1))}
          >
            <span className="block h-full rounded bg-violet-500" style={{ width: `${(count / largest) * 100}%` }} />
          </span>
          <span className="text-right font-mono text-slate-800 tabular-nums">
            {formatCount(count)} <span className="text-slate-500">({share.toFixed(1)} %)</span>
          </span>
        </li>
      ))}
    </ul>
  )
}
