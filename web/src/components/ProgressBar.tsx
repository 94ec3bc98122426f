import { clampPercent, formatCount, formatPercent } from '../lib/format'

interface ProgressBarProps {
  progress: number
  consumed: number
  total: number | null
  active: boolean
}

export function ProgressBar({ progress, consumed, total, active }: ProgressBarProps) {
  const percent = clampPercent(progress)
  const text = formatPercent(percent)
  const of = total !== null ? ` — ${formatCount(consumed)} of ${formatCount(total)} keys consumed` : ''
  return (
    <div>
      <div className="mb-1 flex items-baseline justify-between gap-2">
        <span id="progress-label" className="text-sm font-medium text-slate-600">
          Progress
        </span>
        <span data-testid="progress-text" className="font-mono text-2xl font-semibold tabular-nums">
          {text}
        </span>
      </div>
      <div
        data-testid="progress"
        role="progressbar"
        aria-labelledby="progress-label"
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={Number(percent.toFixed(1))}
        aria-valuetext={`${text}${of}`}
        className="h-4 w-full overflow-hidden rounded-full bg-slate-200"
      >
        <div
          className={`h-full rounded-full transition-[width] duration-700 ease-out ${
            percent >= 100 ? 'bg-emerald-500' : active ? 'bg-sky-600' : 'bg-slate-400'
          }`}
          style={{ width: `${percent}%` }}
        />
      </div>
      {total !== null && (
        <p className="mt-1 text-sm text-slate-600 tabular-nums">
          {formatCount(consumed)} of {formatCount(total)} keys consumed
        </p>
      )}
    </div>
  )
}
