interface MetricProps {
  label: string
  value: string
  testId: string
  hint?: string
}

export function Metric({ label, value, testId, hint }: MetricProps) {
  return (
    <div className="rounded-lg bg-slate-50 px-3 py-2">
      <dt className="text-xs font-medium tracking-wide text-slate-500 uppercase">{label}</dt>
      <dd data-testid={testId} className="font-mono text-lg font-semibold text-slate-900 tabular-nums">
        {value}
      </dd>
      {hint && <dd className="text-xs text-slate-500">{hint}</dd>}
    </div>
  )
}
