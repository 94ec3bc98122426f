import { consumerShares, formatCount } from '../lib/format'
import type { Status } from '../lib/types'

interface ConsumerBarsProps {
  consumers: Status['consumers']
  /** Consumers that hear expiries now (hold a listener slot). */
  listeners?: string[]
}

export function ConsumerBars({ consumers, listeners = [] }: ConsumerBarsProps) {
  const shares = consumerShares(consumers)
  const listening = new Set(listeners)
  const idleListeners = listeners.filter((name) => !(name in consumers))
  if (shares.length === 0) {
    return (
      <div className="space-y-1 text-sm text-slate-500">
        <p>No consumer has taken a key yet.</p>
        {listeners.length > 0 && (
          <p data-testid="listeners">Listening for expiries: {listeners.join(', ')}</p>
        )}
      </div>
    )
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
            {listening.has(name) && (
              <span
                className="ml-1.5 rounded bg-sky-100 px-1 text-xs font-sans text-sky-800"
                data-testid="listener-badge"
                title="Holds a listener slot: hears expiries and claims them"
              >
                listens
              </span>
            )}
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
      {idleListeners.length > 0 && (
        <li className="text-sm text-slate-500" data-testid="listeners">
          Listening, no key taken yet: {idleListeners.join(', ')}
        </li>
      )}
    </ul>
  )
}
