import type { Connection } from '../hooks/useStatusStream'
import type { LoadState } from '../hooks/useDashboard'
import { formatCount, formatElapsed, formatRate, stateLabel, stateTone, type Tone } from '../lib/format'
import type { Status } from '../lib/types'
import { Card } from './Card'
import { Metric } from './Metric'
import { ProgressBar } from './ProgressBar'
import { VerdictBanner } from './VerdictBanner'

const BADGE: Record<Tone, string> = {
  neutral: 'bg-slate-100 text-slate-700 ring-slate-300',
  active: 'bg-sky-100 text-sky-800 ring-sky-300',
  good: 'bg-emerald-100 text-emerald-800 ring-emerald-300',
  warn: 'bg-amber-100 text-amber-900 ring-amber-300',
  bad: 'bg-red-100 text-red-800 ring-red-300',
}

interface StatusPanelProps {
  status: Status | null
  load: LoadState
  connection: Connection
}

export function StatusPanel({ status, load, connection }: StatusPanelProps) {
  const state = status?.state ?? 'idle'
  const label = status ? stateLabel(state) : load === 'failed' ? 'Unknown' : 'Loading…'
  const stale = connection === 'unreachable' && status !== null
  return (
    <Card
      title="Live status"
      id="status-title"
      testId="status-panel"
      aside={
        <div className="flex flex-wrap items-center gap-2 text-sm">
          {status?.test_id && (
            <span className="font-mono text-slate-500" data-testid="test-id">
              {status.test_id}
            </span>
          )}
          <span
            data-testid="status"
            data-state={status ? state : 'unknown'}
            className={`rounded-full px-2.5 py-0.5 font-semibold ring-1 ${BADGE[stateTone(state)]}`}
          >
            {label}
          </span>
        </div>
      }
    >
      <div className={`space-y-4 ${stale ? 'opacity-60' : ''}`}>
        {stale && <p className="text-sm text-slate-600">Showing the last values received.</p>}
        <ProgressBar
          progress={status?.progress ?? 0}
          consumed={status?.consumed ?? 0}
          total={status?.config?.num_keys ?? null}
          active={status?.is_running ?? false}
        />
        <dl className="grid grid-cols-2 gap-2 sm:grid-cols-3">
          <Metric label="Generated" testId="generated" value={formatCount(status?.generated ?? 0)} />
          <Metric label="Consumed" testId="consumed" value={formatCount(status?.consumed ?? 0)} />
          <Metric label="In flight" testId="in-flight" value={formatCount(status?.in_flight ?? 0)} />
          <Metric
            label="Generation rate"
            testId="generation-rate"
            value={formatRate(status?.generation_rate ?? 0)}
          />
          <Metric
            label="Consumption rate"
            testId="consumption-rate"
            value={formatRate(status?.consumption_rate ?? 0)}
          />
          <Metric label="Elapsed" testId="elapsed" value={formatElapsed(status?.elapsed_s ?? 0)} />
        </dl>
        {status && (status.redelivered > 0 || status.dead_letters > 0) && (
          <p className="text-sm text-slate-600" data-testid="redeliveries">
            {formatCount(status.redelivered)} redelivered · {formatCount(status.dead_letters)} dead letters
          </p>
        )}
        {status && status.dead_letters > 0 && (status.recent_dead_letters ?? []).length > 0 && (
          <div className="rounded-md bg-red-50 p-3 text-sm ring-1 ring-red-200" data-testid="dead-letters">
            <p className="font-semibold text-red-800">Dead letters: the handler failed on every delivery</p>
            <ul className="mt-1 space-y-1">
              {(status.recent_dead_letters ?? []).map((letter) => (
                <li key={letter.claim_id || letter.key} className="break-all text-red-900">
                  <span className="font-mono">{letter.key}</span> after {letter.attempts} deliveries:{' '}
                  {letter.error}
                </li>
              ))}
            </ul>
          </div>
        )}
        <VerdictBanner status={status} />
      </div>
    </Card>
  )
}
