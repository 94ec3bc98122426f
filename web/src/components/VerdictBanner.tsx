import { summarizeVerdict } from '../lib/format'
import type { Status } from '../lib/types'

function pendingText(status: Status | null): string {
  if (status?.state === 'interrupted' && status.reason && !status.is_running)
    return `Interrupted: ${status.reason}`
  if (status?.state === 'interrupted')
    return 'The generator restarted during this test; the verdict follows once its keys have drained.'
  if (status?.state === 'failed') return `The test failed${status.reason ? `: ${status.reason}` : '.'}`
  if (status?.is_running) return 'The verdict appears when every key is accounted for.'
  return 'No verdict yet: start a test.'
}

/** A test that ended without a verdict (Redis lost it, or it failed) is shown as a failure. */
function endedWithoutVerdict(status: Status | null): boolean {
  return !!status && !status.verdict && !status.is_running && (status.state === 'failed' || !!status.reason)
}

/**
 * The live region is always in the page so screen readers announce the verdict when it
 * appears at the end of a test, not only when the page is loaded with one.
 */
export function VerdictBanner({ status }: { status: Status | null }) {
  const verdict = status?.verdict ?? null
  const summary = verdict && status ? summarizeVerdict(verdict, status.state) : null
  const unfinished = !summary && endedWithoutVerdict(status)
  const outcome = summary ? (summary.ok ? 'exactly-once' : 'failed') : unfinished ? 'no-verdict' : 'pending'
  const look =
    summary && summary.ok
      ? 'border-emerald-300 bg-emerald-50 text-emerald-900'
      : summary || unfinished
        ? 'border-red-300 bg-red-50 text-red-900'
        : 'border-dashed border-slate-300 bg-white text-slate-500'
  return (
    <div
      data-testid="verdict"
      data-verdict={outcome}
      role="status"
      aria-live="polite"
      aria-atomic="true"
      className={`rounded-lg border px-4 py-3 ${look}`}
    >
      {summary ? (
        <>
          <p className="flex items-center gap-2 text-lg font-semibold">
            <span aria-hidden="true">{summary.ok ? '✓' : '✗'}</span>
            <span data-testid="verdict-headline">{summary.headline}</span>
          </p>
          <p className="text-sm" data-testid="verdict-detail">
            {summary.detail}
          </p>
        </>
      ) : (
        <p className="text-sm" data-testid="verdict-pending">
          {pendingText(status)}
        </p>
      )}
    </div>
  )
}
